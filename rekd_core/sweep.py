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
human ones of a dataset with rationales (its test split; ERASER movies), and ``read_at: [RATIOS]`` (with an
optional ``read_limit: N``, a stratified subset of its test split) to read the finished model at each of
those ratios, one ``read_at`` row each in the results file (rekd_core/results.py). ``teacher``,
``init_from`` and ``tokenizer`` may name another run; a list of ``teacher`` runs (seeds of one
teacher on one train/dev split) means the one of them with the best dev accuracy. Runs whose result is
already recorded (or
whose checkpoint is complete) are skipped, so a recipe resumes where it stopped; several
``rekd sweep --only ...`` processes may share one results file; a done run's missing readings are taken
on the next sweep. A done run whose ``keep`` is
turned on later is shipped as it is: copied from ``work_dir`` to ``out_root``, not retrained.
"""
from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

from .checkpoint import copy_checkpoint, read_config, read_metrics
from .config import TrainConfig, load_config_file
from .errors import CheckpointError, ConfigError
from .model_config import ModelConfig
from .results import READ_AT, TRAINING, append_result, mark_kept, name_columns, read_rows, recipe_headline
from .training import split_seed_of, train

RUN_KEYS = {"name", "role", "ratios", "seeds", "keep", "plausibility", "read_at", "read_limit"}
REFERENCE_KEYS = ("teacher", "init_from", "tokenizer")  # options that may name another run


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
    regular expression), in the recipe's order, and read each finished run at the ratios of its
    ``read_at`` that have no row yet; return the results file."""
    recipe = load_config_file(recipe_path, known=None)
    roots, results_path = recipe_outputs(recipe)
    headlines = recipe_headline(recipe)
    runs = expand_runs(recipe)
    selected = [r for r in runs if only is None or re.search(only, r["name"])]
    rows = read_rows(results_path, headlines)
    done = {row["run"]: row for row in rows if row["source"] != READ_AT}
    ship_done_runs(selected, done, roots, results_path, dry_run)
    todo = [r for r in selected if r["name"] not in done]
    unread = {r["name"]: missing_reads(r, rows) for r in selected}
    print(f"{len(runs)} runs in {recipe_path}: {len(runs) - len(todo)} done or filtered out, {len(todo)} to run, "
          f"{sum(bool(ratios) for ratios in unread.values())} to read at more ratios")
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
        row = result_row(run, out, headlines)
        if run.get("plausibility"):
            row.update(plausibility_row(out, run["plausibility"]))
        append_result(results_path, row)
    for run in selected:
        if unread[run["name"]]:
            read_run(run, unread[run["name"]], roots.out(run), results_path, headlines, dry_run)
    return results_path


def read_plan(run: dict) -> tuple[list[float], int | None]:
    """A run's ``read_at`` ratios and ``read_limit`` (None: its whole test split), checked: ``ConfigError``
    unless the ratios are a list of numbers in (0, 1] and the limit a positive integer."""
    ratios, limit = run.get("read_at") or [], run.get("read_limit")
    if not isinstance(ratios, list) or not all(isinstance(r, (int, float)) and 0 < r <= 1 for r in ratios):
        raise ConfigError(f"run {run['name']}: read_at must be a list of ratios in (0, 1], got {ratios!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"run {run['name']}: read_limit must be a positive number of examples, got {limit!r}")
    return [float(r) for r in ratios], limit


def missing_reads(run: dict, rows: list[dict]) -> list[float]:
    """The ratios of ``run``'s ``read_at`` that the results rows (``read_rows``) do not hold a reading at."""
    read = {round(float(row["read_ratio"]), 6) for row in rows
            if row["run"] == run["name"] and row["source"] == READ_AT}
    return [ratio for ratio in read_plan(run)[0] if round(ratio, 6) not in read]


def read_run(run: dict, ratios: list[float], checkpoint: Path, results_path: Path, headlines: dict[str, dict],
             dry_run: bool = False, batch_size: int = 64) -> None:
    """Evaluate the finished ``checkpoint`` of ``run`` at each of ``ratios`` (top-k) on its test split (the
    dataset, split seed and ``eval_limit`` it was tested on when it trained; ``read_limit``: a stratified
    subset of that) and append one ``read_at`` row per ratio. A run without a complete checkpoint here (a
    ``keep: false`` run of another machine) is said and skipped."""
    from .checkpoint import load_checkpoint
    from .data import load_dataset_spec, pick_split, stratified_subset
    from .evaluation import evaluate_at_ratios

    print(f"[read] {run['name']} at {', '.join(f'{r:g}' for r in ratios)}", flush=True)
    if dry_run:
        return
    if not _complete(checkpoint):
        print(f"[read] {run['name']}: no complete checkpoint at {checkpoint}, not read", flush=True)
        return
    started = time.time()
    model = load_checkpoint(checkpoint)
    config = read_config(checkpoint)
    training, seed = config.get("training", {}), split_seed_of(config)
    split = pick_split(load_dataset_spec(training.get("dataset") or config["dataset"]), "test", seed,
                       training.get("eval_limit"))
    limit = read_plan(run)[1]
    if limit and limit < len(split):
        split = split.subset(stratified_subset(split.targets, limit, seed))
    readings = evaluate_at_ratios(model, split, ratios, batch_size=batch_size)
    seconds = (time.time() - started) / len(ratios)
    base = result_row(run, checkpoint, headlines)
    for ratio, metrics in readings.items():
        append_result(results_path, {**{k: base[k] for k in READ_KEPT_FIELDS}, "source": READ_AT, "read_ratio": ratio,
                                     "accuracy": metrics["accuracy"], "f1": metrics.get("f1"),
                                     "achieved_ratio": metrics.get("ratio", 1.0),
                                     "ratio_argmax": metrics.get("ratio_argmax", ""),
                                     "test_examples": metrics["n"], "wall_time_s": round(seconds, 1)})
    print(f"[read] {run['name']}: " + ", ".join(f"{r:g} -> {m['accuracy']:.4f}" for r, m in readings.items())
          + f" ({len(split)} examples, {seconds:.0f} s a ratio)", flush=True)


# What a read_at row repeats of the run's training row: the model, not its test metrics nor where it ran.
READ_KEPT_FIELDS = ("run", "task", "role", "mode", "backbone", "ratio", "seed", "parameters", "train_examples",
                    "epochs", "kept", "split_seed", "teacher", "dev_accuracy", "group", "variant", "family", "headline",
                    "ratio_range")


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
    return {"plausibility_f1": metrics.get("plausibility_f1"),
            "plausibility_iou_f1": metrics.get("plausibility_iou_f1"),
            "random_plausibility_f1": metrics.get("random_plausibility_f1"), "plausibility_examples": metrics["n"]}


def result_row(run: dict, checkpoint: Path, headlines: dict[str, dict] | None = None) -> dict:
    """One tidy row of the results file from a finished checkpoint."""
    config, metrics = read_config(checkpoint), read_metrics(checkpoint)
    model = ModelConfig.from_dict(config)
    test = metrics.get("test", {})
    params = config.get("parameters", {})
    mode = "mlm" if config.get("pretraining") else model.mode  # an MLM run has no test metrics
    training = config.get("training", {})
    return {"run": run["name"], "task": model.task, "role": run.get("role", ""), "mode": mode,
            "backbone": model.backbone.source, "ratio": model.ratio,
            "seed": training.get("seed", ""), "accuracy": test.get("accuracy"), "f1": test.get("f1"),
            "achieved_ratio": test.get("ratio", 1.0 if test else ""), "ratio_argmax": test.get("ratio_argmax", ""),
            "teacher_agreement": test.get("teacher_agreement", ""),
            "teacher_mask_iou": test.get("teacher_mask_iou", ""),
            "sufficiency": test.get("sufficiency", ""), "comprehensiveness": test.get("comprehensiveness", ""),
            "parameters": params.get("generator", 0) + params.get("predictor", 0),
            "train_examples": metrics.get("train_examples", ""), "test_examples": test.get("n", ""),
            "epochs": training.get("epochs", ""),
            "wall_time_s": metrics.get("wall_time_s", ""), "hardware": metrics.get("hardware", ""),
            "kept": run.get("keep", True) is not False,
            "split_seed": split_seed_of(config),
            # REKD: the checkpoint distilled from; RE: the one teacher_agreement compares with
            "teacher": (config.get("teacher") or config.get("compared_with") or {}).get("path", ""),
            # the kept epoch's, on the run's own dev split: what a variant may be chosen on, not the test set
            "dev_accuracy": metrics.get("dev", {}).get("accuracy", ""),
            **name_columns(run["name"], headlines or {}), "source": TRAINING, "read_ratio": model.ratio,
            "ratio_range": _range_cell(model.ratio_range)}


def _range_cell(span: list[float] | None) -> str:
    """The ``ratio_range`` column of a model trained over a range of ratios (``0.05-0.5``); "" for one ratio."""
    return f"{float(span[0]):g}-{float(span[1]):g}" if span else ""


def train_config(run: dict, roots: RunRoots) -> TrainConfig:
    """The TrainConfig of one expanded recipe run, its references resolved and its output under ``roots``."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(run) - fields - RUN_KEYS
    if unknown:
        raise ConfigError(f"run {run['name']}: unknown options {sorted(unknown)}")
    read_plan(run)
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
