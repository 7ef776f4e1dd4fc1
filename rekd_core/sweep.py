"""Recipes of many runs: one YAML file rebuilds a set of checkpoints and a tidy results file.

    defaults: {task: text, dataset: "aclimdb:../shared/data/aclImdb_v1.tar.gz", epochs: 2}
    out_root: checkpoints
    results: checkpoints/results.csv
    runs:
      - {name: text/teacher-re, role: teacher, mode: re, backbone: bert-2x128}
      - {name: "text/student-rekd-r{ratio}", role: student, mode: rekd, teacher: text/teacher-re,
         backbone: bert-1x64, ratios: [0.05, 0.1], keep: false}

Each entry is a TrainConfig plus ``name`` (the checkpoint directory under ``out_root``), ``role``
(teacher / student, for the results file), ``ratios`` / ``seeds`` (expanded into one run each;
``{ratio}`` and ``{seed}`` in the name and in ``teacher`` / ``init_from`` / ``tokenizer``),
``keep: false`` to write the checkpoint under ``work_dir`` (default ``runs/``, not shipped) instead
of ``out_root``, and ``plausibility: SPEC`` to score the finished model's rationales against the
human ones of a dataset with rationales (its test split; ERASER movies). ``teacher``,
``init_from`` and ``tokenizer`` may name another run; a list of ``teacher`` runs (seeds of one
teacher on one train/dev split) means the one of them with the best dev accuracy. Runs whose result is already recorded (or
whose checkpoint is complete) are skipped, so a recipe resumes where it stopped; several
``rekd sweep --only ...`` processes may share one results file. A done run whose ``keep`` is
turned on later is shipped as it is: copied from ``work_dir`` to ``out_root``, not retrained.
"""
from __future__ import annotations

import csv
import dataclasses
import fcntl
import re
import time
from pathlib import Path

from .checkpoint import copy_checkpoint, read_config, read_metrics
from .errors import CheckpointError, ConfigError
from .training import TrainConfig, load_config_file, split_seed_of, train

RESULT_FIELDS = ["run", "task", "role", "mode", "backbone", "ratio", "seed", "accuracy", "f1", "achieved_ratio",
                 "ratio_argmax", "teacher_agreement", "teacher_mask_iou", "sufficiency", "comprehensiveness",
                 "plausibility_f1", "plausibility_iou_f1", "random_plausibility_f1", "plausibility_examples",
                 "parameters", "train_examples", "test_examples", "epochs", "wall_time_s", "hardware", "kept",
                 "split_seed", "teacher", "dev_accuracy"]  # new columns go last, so that the rows of older files still line up
RUN_KEYS = {"name", "role", "ratios", "seeds", "keep", "plausibility"}
REFERENCE_KEYS = ("teacher", "init_from", "tokenizer")  # options that may name another run


SEED_SUFFIX = re.compile(r"-s\d+$")  # the recipes name a run's extra seeds NAME-sSEED
RATIO_SUFFIX = re.compile(r"-r\d*\.?\d+$")  # ... and the points of a ratio sweep NAME-rRATIO
VARIANT_RUN = re.compile(r"/variants/(?:teacher|student)-(?:rekd|re|cls)-(?P<variant>.+)$")


def series_name(run_name: str) -> str:
    """The run's name without its ``-sSEED`` suffix: the runs that share it are seeds of one model."""
    return SEED_SUFFIX.sub("", str(run_name))


def variant_of(run_name: str) -> str | None:
    """The recipe variant a run belongs to (``text/variants/student-re-example-cost-s2027`` ->
    ``example-cost``), or None for a headline, seed or sweep run. A variant lives under
    ``GROUP/variants/ROLE-MODE-VARIANT[-rRATIO]``; the dashboard plots it as its own series."""
    match = VARIANT_RUN.search(RATIO_SUFFIX.sub("", series_name(run_name)))
    return match["variant"] if match else None


def run_family(run_name: str, headlines: dict[str, dict]) -> tuple[str, bool]:
    """``(family, is_headline)`` of a run under a recipe's ``headline`` (group -> {"variant": the variant
    whose runs are the group's shipped headline, "unnamed": the name of its runs without a variant}).
    The family is the run's recipe variant; for a run without one, "" when those runs are the group's
    headline (a group the recipe does not name), else the group's ``unnamed`` ("no variant")."""
    chosen = headlines.get(str(run_name).split("/")[0]) or {}
    variant = variant_of(run_name) or ""
    is_headline = variant == chosen.get("variant", "")
    if variant or is_headline:
        return variant, is_headline
    return chosen.get("unnamed") or "no variant", False


def recipe_headline(recipe: dict) -> dict[str, dict]:
    """A recipe's ``headline`` (group -> {"variant": ..., "unnamed": ...}; {} when it names none), the
    mapping ``run_family`` reads. ``ConfigError`` when it is not a mapping of mappings."""
    headline = recipe.get("headline") or {}
    if not isinstance(headline, dict) or not all(isinstance(entry, dict) for entry in headline.values()):
        raise ConfigError("the recipe's headline must map each group to {variant: ..., unnamed: ...}")
    return headline


def recipe_outputs(recipe: dict) -> tuple[RunRoots, Path]:
    """Where a recipe writes: its run roots (``out_root``, ``work_dir``) and its results file, as given
    (relative paths are read from where ``rekd sweep`` runs: the repository root)."""
    roots = RunRoots(Path(recipe.get("out_root", "checkpoints")), Path(recipe.get("work_dir", "runs")))
    return roots, Path(recipe.get("results", roots.shipped / "results.csv"))


def expand_runs(recipe: dict) -> list[dict]:
    """The recipe's runs, one dict per checkpoint, with defaults applied and names formatted."""
    defaults = recipe.get("defaults", {})
    runs = []
    for entry in recipe.get("runs", []):
        entry = {**defaults, **entry}
        if "name" not in entry:
            raise ConfigError(f"a run has no name: {entry}")
        for ratio in entry.get("ratios", [entry.get("ratio")]):
            for seed in entry.get("seeds", [entry.get("seed", TrainConfig.seed)]):
                run = {k: v for k, v in entry.items() if k not in ("ratios", "seeds")}
                run.update(ratio=ratio, seed=seed)
                for key in ("name", *REFERENCE_KEYS):
                    if isinstance(run.get(key), str):
                        run[key] = run[key].format(ratio=ratio, seed=seed)
                    elif isinstance(run.get(key), list):
                        run[key] = [str(ref).format(ratio=ratio, seed=seed) for ref in run[key]]
                runs.append(run)
    names = [r["name"] for r in runs]
    if len(set(names)) != len(names):
        raise ConfigError("run names must be unique (use {ratio} and {seed} in swept names)")
    return runs


def run_sweep(recipe_path: str, only: str | None = None, dry_run: bool = False) -> Path:
    """Run every run of the recipe that is not done yet (``only``: those whose name matches this
    regular expression), in the recipe's order; return the results file."""
    recipe = load_config_file(recipe_path, known=None)
    roots, results_path = recipe_outputs(recipe)
    runs = expand_runs(recipe)
    selected = [r for r in runs if only is None or re.search(only, r["name"])]
    done = {row["run"]: row for row in read_results(results_path)}
    ship_done_runs(selected, done, roots, results_path, dry_run)
    todo = [r for r in selected if r["name"] not in done]
    print(f"{len(runs)} runs in {recipe_path}: {len(runs) - len(todo)} done or filtered out, {len(todo)} to run")
    names = {r["name"] for r in runs}
    for i, run in enumerate(todo, 1):
        print(f"[{i}/{len(todo)}] {run['name']}", flush=True)
        if dry_run:
            continue
        out = roots.out(run)
        if not _complete(out):
            check_references(run, names, done, roots, results_path)
            started = time.time()
            train(train_config(with_chosen_teacher(run, roots), roots))
            print(f"[{i}/{len(todo)}] {run['name']} done in {time.time() - started:.0f} s", flush=True)
        row = result_row(run, out)
        if run.get("plausibility"):
            row.update(plausibility_row(out, run["plausibility"]))
        append_result(results_path, row)
    return results_path


def ship_done_runs(runs: list[dict], rows: dict[str, dict], roots: RunRoots, results_path: Path,
                   dry_run: bool = False) -> None:
    """Copy into ``out_root`` each done run (``rows``: the results file's rows by run name) that the
    recipe now keeps but that was written under ``work_dir`` (its ``keep`` changed after it trained),
    and mark its results row kept: a recipe can change what it ships without retraining."""
    shipped = []
    for run in runs:
        row = rows.get(run["name"])
        if row is None or run.get("keep", True) is False or row.get("kept") == "True":
            continue
        source, target = roots.work / run["name"], roots.out(run)
        print(f"shipping {run['name']}: {source} -> {target}", flush=True)
        if dry_run:
            continue
        if not _complete(target):
            if not _complete(source):
                raise ConfigError(f"run {run['name']} is now kept, but {source} holds no complete checkpoint of it "
                                  f"to ship; delete its row from {results_path} to train it again")
            copy_checkpoint(source, target)
        shipped.append(run["name"])
    if shipped:
        mark_kept(results_path, shipped)


@dataclasses.dataclass
class RunRoots:
    """Where runs are written: shipped checkpoints under ``shipped``, ``keep: false`` runs under ``work``."""

    shipped: Path
    work: Path

    def out(self, run: dict) -> Path:
        return (self.shipped if run.get("keep", True) is not False else self.work) / run["name"]

    def resolve(self, reference: str) -> str:
        """A checkpoint path as given, else the run of that name (shipped or not)."""
        if Path(reference).is_dir():
            return reference
        for root in (self.shipped, self.work):
            if (root / reference).is_dir():
                return str(root / reference)
        return reference


def check_references(run: dict, names: set[str], done: dict[str, dict], roots: RunRoots, results_path: Path) -> None:
    """Before ``run`` trains: each run of the recipe (``names``) that it names as teacher, start or
    tokenizer must have its checkpoint, or a ``ConfigError`` says why not and what to do. A run with
    ``keep: false`` is not in the repository, so a fresh clone has its results row but not its checkpoint."""
    for key in REFERENCE_KEYS:
        value = run.get(key)
        for reference in value if isinstance(value, list) else [value]:
            if reference not in names or Path(roots.resolve(reference)).is_dir():
                continue
            if reference in done:
                raise ConfigError(f"run {run['name']}: its {key} {reference} has a row in {results_path} but no "
                                  f"checkpoint under {roots.shipped} or {roots.work}; delete that row and select "
                                  f"{reference} too (--only), and the sweep trains it first")
            raise ConfigError(f"run {run['name']}: its {key} {reference} is not trained yet; select it too (--only), "
                              f"and the sweep trains it first")


def with_chosen_teacher(run: dict, roots: RunRoots) -> dict:
    """The run with a list of candidate ``teacher`` runs replaced by the one of best dev accuracy.
    Choosing on dev leaves the test set untouched; the candidates must share a train/dev split (one
    split seed), or their dev scores would not be comparable. Done just before the run trains,
    once the candidates exist."""
    candidates = run.get("teacher")
    if not isinstance(candidates, list):
        return run
    paths = [roots.resolve(name) for name in candidates]
    configs = {path: read_config(path) for path in paths}
    unfinished = [path for path, config in configs.items() if config.get("status") != "complete"]
    if unfinished:
        raise ConfigError(f"run {run['name']}: teacher candidates not trained to the end yet: {unfinished}")
    splits = {split_seed_of(config) for config in configs.values()}
    if len(splits) > 1:
        raise ConfigError(f"run {run['name']}: teacher candidates were trained on different train/dev splits "
                          f"(split seeds {sorted(splits)}), so their dev accuracies are not comparable")
    best = max(paths, key=lambda path: read_metrics(path)["dev"]["accuracy"])
    print(f"  teacher: {best} (best dev accuracy of {len(paths)})", flush=True)
    return {**run, "teacher": best}


def plausibility_row(checkpoint: Path, dataset: str, batch_size: int = 64) -> dict:
    """Token-level plausibility of a model's rationales (top-k at its ratio) on the test split of a
    dataset with human rationales, beside a random selection of the same size."""
    from .checkpoint import load_checkpoint
    from .data import load_dataset_spec, pick_split
    from .evaluation import check_dataset_fits, evaluate_split

    model = load_checkpoint(checkpoint)
    if model.generator is None:
        return {}
    bundle = load_dataset_spec(dataset)
    check_dataset_fits(bundle, model)
    metrics = evaluate_split(model, pick_split(bundle, "test"), batch_size=batch_size)
    return {"plausibility_f1": metrics.get("plausibility_f1"), "plausibility_iou_f1": metrics.get("plausibility_iou_f1"),
            "random_plausibility_f1": metrics.get("random_plausibility_f1"), "plausibility_examples": metrics["n"]}


def result_row(run: dict, checkpoint: Path) -> dict:
    """One tidy row of the results file from a finished checkpoint."""
    config, metrics = read_config(checkpoint), read_metrics(checkpoint)
    test = metrics.get("test", {})
    params = config.get("parameters", {})
    mode = "mlm" if config.get("pretraining") else config["mode"]  # an MLM run has no test metrics
    training = config.get("training", {})
    return {"run": run["name"], "task": config["task"], "role": run.get("role", ""), "mode": mode,
            "backbone": config["backbone"].get("source", ""), "ratio": config["ratio"],
            "seed": training.get("seed", ""), "accuracy": test.get("accuracy"), "f1": test.get("f1"),
            "achieved_ratio": test.get("ratio", 1.0 if test else ""), "ratio_argmax": test.get("ratio_argmax", ""),
            "teacher_agreement": test.get("teacher_agreement", ""), "teacher_mask_iou": test.get("teacher_mask_iou", ""),
            "sufficiency": test.get("sufficiency", ""), "comprehensiveness": test.get("comprehensiveness", ""),
            "parameters": params.get("generator", 0) + params.get("predictor", 0),
            "train_examples": metrics.get("train_examples", ""), "test_examples": test.get("n", ""), "epochs": training.get("epochs", ""),
            "wall_time_s": metrics.get("wall_time_s", ""), "hardware": metrics.get("hardware", ""),
            "kept": run.get("keep", True) is not False,
            "split_seed": split_seed_of(config),
            # REKD: the checkpoint distilled from; RE: the one teacher_agreement compares with
            "teacher": (config.get("teacher") or config.get("compared_with") or {}).get("path", ""),
            # the kept epoch's, on the run's own dev split: what a variant may be chosen on, not the test set
            "dev_accuracy": metrics.get("dev", {}).get("accuracy", "")}


def read_results(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def append_result(path: str | Path, row: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", newline="") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # several sweep processes may append to one file
        writer = csv.DictWriter(fh, fieldnames=RESULT_FIELDS, lineterminator="\n")
        if fh.tell() == 0:
            writer.writeheader()
        else:
            _extend_header(fh)
        writer.writerow({k: row.get(k, "") for k in RESULT_FIELDS})
        fh.flush()


def mark_kept(path: str | Path, names: list[str], kept: bool = True) -> None:
    """Set ``kept`` in the results rows of the runs ``names`` (the file rewritten in place, under the
    lock that ``append_result`` takes; every other field is written back as it was read)."""
    with open(path, "r+", newline="") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        reader = csv.DictReader(fh)
        columns, rows = reader.fieldnames or [], list(reader)
        for row in rows:
            if row["run"] in names:
                row["kept"] = str(kept)
        fh.seek(0)
        fh.truncate()
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        fh.flush()


def _extend_header(fh) -> None:
    """Give a results file written before the newest columns their names (its rows stay as they are:
    new columns are only ever added at the end, so the old rows just leave them empty)."""
    fh.seek(0)
    header = fh.readline()  # every append checks it; only an outdated file is read whole
    columns = header.strip().split(",")
    if columns == RESULT_FIELDS:
        return
    if columns != RESULT_FIELDS[:len(columns)]:
        raise ConfigError(f"{fh.name}: its columns are not those of a rekd results file ({header.strip()})")
    rows = fh.read()
    fh.seek(0)
    fh.truncate()
    fh.write(",".join(RESULT_FIELDS) + "\n" + rows)


def train_config(run: dict, roots: RunRoots) -> TrainConfig:
    """The TrainConfig of one expanded recipe run, its references resolved and its output under ``roots``."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(run) - fields - RUN_KEYS
    if unknown:
        raise ConfigError(f"run {run['name']}: unknown options {sorted(unknown)}")
    options = {k: v for k, v in run.items() if k in fields}
    for key in REFERENCE_KEYS:
        if options.get(key):
            options[key] = roots.resolve(options[key])
    options["out"] = str(roots.out(run))
    options.setdefault("cache_dir", str(roots.work / "cache"))
    return TrainConfig(**options)


def _complete(path: Path) -> bool:
    try:
        return read_config(path).get("status") == "complete"
    except CheckpointError:
        return False
