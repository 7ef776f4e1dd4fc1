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
``{ratio}`` and ``{seed}`` in the name), and ``keep: false`` to record the metrics but delete the
weights afterwards. ``teacher`` and ``init_from`` may name another run. Runs whose result is
already recorded (or whose checkpoint is complete) are skipped, so a recipe resumes where it stopped.
"""
from __future__ import annotations

import csv
import dataclasses
import shutil
import time
from pathlib import Path

from .checkpoint import read_config, read_metrics
from .errors import CheckpointError, ConfigError
from .training import TrainConfig, load_config_file, train

RESULT_FIELDS = ["run", "task", "role", "mode", "backbone", "ratio", "seed", "accuracy", "f1", "achieved_ratio",
                 "ratio_argmax", "teacher_agreement", "teacher_mask_iou", "sufficiency", "comprehensiveness",
                 "parameters", "train_examples", "epochs", "wall_time_s", "hardware", "kept"]
RUN_KEYS = {"name", "role", "ratios", "seeds", "keep"}


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
                run.update(ratio=ratio, seed=seed, name=entry["name"].format(ratio=ratio, seed=seed))
                runs.append(run)
    names = [r["name"] for r in runs]
    if len(set(names)) != len(names):
        raise ConfigError("run names must be unique (use {ratio} and {seed} in swept names)")
    return runs


def run_sweep(recipe_path: str, only: str | None = None, dry_run: bool = False) -> Path:
    """Run every run of the recipe that is not done yet; return the results file."""
    recipe = load_config_file(recipe_path, known=None)
    out_root = Path(recipe.get("out_root", "checkpoints"))
    results_path = Path(recipe.get("results", out_root / "results.csv"))
    runs = expand_runs(recipe)
    done = {row["run"] for row in read_results(results_path)}
    todo = [r for r in runs if r["name"] not in done and (only is None or only in r["name"])]
    print(f"{len(runs)} runs in {recipe_path}: {len(runs) - len(todo)} done or filtered out, {len(todo)} to run")
    for i, run in enumerate(todo, 1):
        print(f"[{i}/{len(todo)}] {run['name']}", flush=True)
        if dry_run:
            continue
        out = out_root / run["name"]
        if not _complete(out):
            started = time.time()
            train(_train_config(run, out_root))
            print(f"[{i}/{len(todo)}] {run['name']} done in {time.time() - started:.0f} s", flush=True)
        append_result(results_path, result_row(run, out))
        if run.get("keep", True) is False:
            shutil.rmtree(out)
    return results_path


def result_row(run: dict, checkpoint: Path) -> dict:
    """One tidy row of the results file from a finished checkpoint."""
    config, metrics = read_config(checkpoint), read_metrics(checkpoint)
    test = metrics.get("test", {})
    params = config.get("parameters", {})
    return {"run": run["name"], "task": config["task"], "role": run.get("role", ""), "mode": config["mode"],
            "backbone": config["backbone"].get("source", ""), "ratio": config["ratio"],
            "seed": config.get("training", {}).get("seed", ""), "accuracy": test.get("accuracy"), "f1": test.get("f1"),
            "achieved_ratio": test.get("ratio", 1.0), "ratio_argmax": test.get("ratio_argmax", ""),
            "teacher_agreement": test.get("teacher_agreement", ""), "teacher_mask_iou": test.get("teacher_mask_iou", ""),
            "sufficiency": test.get("sufficiency", ""), "comprehensiveness": test.get("comprehensiveness", ""),
            "parameters": params.get("generator", 0) + params.get("predictor", 0),
            "train_examples": metrics.get("train_examples", ""), "epochs": config.get("training", {}).get("epochs", ""),
            "wall_time_s": metrics.get("wall_time_s", ""), "hardware": metrics.get("hardware", ""),
            "kept": run.get("keep", True) is not False}


def read_results(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def append_result(path: str | Path, row: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.is_file()
    with open(path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=RESULT_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow({k: row.get(k, "") for k in RESULT_FIELDS})


def _train_config(run: dict, out_root: Path) -> TrainConfig:
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(run) - fields - RUN_KEYS
    if unknown:
        raise ConfigError(f"run {run['name']}: unknown options {sorted(unknown)}")
    options = {k: v for k, v in run.items() if k in fields}
    for key in ("teacher", "init_from", "tokenizer"):  # a reference to another run of the recipe
        if options.get(key) and not Path(options[key]).is_dir() and (out_root / options[key]).is_dir():
            options[key] = str(out_root / options[key])
    options["out"] = str(out_root / run["name"])
    return TrainConfig(**options)


def _complete(path: Path) -> bool:
    try:
        return read_config(path).get("status") == "complete"
    except CheckpointError:
        return False
