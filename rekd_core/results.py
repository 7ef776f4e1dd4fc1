"""The results file of ``rekd sweep``: its columns, the one reader and the writer.

One row per trained run (``source`` "training": its test metrics at its own ratio) and, for runs with
``read_at`` in their recipe entry, one row per ratio the finished checkpoint was read at (``source``
"read_at"; ``read_ratio`` is the ratio of its test metrics). Columns are only ever added at the end, so
a file written by older code still lines up; ``fill_row`` gives such a file's rows their missing columns.

The columns ``group``, ``variant``, ``family`` and ``headline`` say which model family a run belongs to.
The sweep writes them from the recipe; for older rows the reader computes them the same way, in
``name_columns``: the only place where a run's name is read for what it means.
"""
from __future__ import annotations

import csv
import fcntl
import re
from pathlib import Path

from .errors import ConfigError, DataError

RESULT_FIELDS = ["run", "task", "role", "mode", "backbone", "ratio", "seed", "accuracy", "f1", "achieved_ratio",
                 "ratio_argmax", "teacher_agreement", "teacher_mask_iou", "sufficiency", "comprehensiveness",
                 "plausibility_f1", "plausibility_iou_f1", "random_plausibility_f1", "plausibility_examples",
                 "parameters", "train_examples", "test_examples", "epochs", "wall_time_s", "hardware", "kept",
                 "split_seed", "teacher", "dev_accuracy",
                 # the model family (see name_columns), and what a row measures (see the module docstring)
                 "group", "variant", "family", "headline", "source", "read_ratio", "ratio_range"]
NUMERIC_FIELDS = ["ratio", "seed", "accuracy", "f1", "achieved_ratio", "ratio_argmax", "teacher_agreement",
                  "teacher_mask_iou", "sufficiency", "comprehensiveness", "plausibility_f1", "plausibility_iou_f1",
                  "random_plausibility_f1", "plausibility_examples", "parameters", "train_examples", "test_examples",
                  "epochs", "wall_time_s", "split_seed", "dev_accuracy", "read_ratio"]
BOOLEAN_FIELDS = ["kept", "headline"]
ALIASES = {"modality": "task"}  # a column name of older files -> the column it means
TRAINING, READ_AT = "training", "read_at"  # the values of ``source``

# Recipes name a variant's runs GROUP/variants/ROLE-MODE-VARIANT, its extra seeds NAME-sSEED and the points
# of a ratio sweep NAME-rRATIO (configs/embedded.yaml).
_VARIANT_RUN = re.compile(r"/variants/(?:teacher|student)-(?:rekd|re|cls)-(?P<variant>.+?)(?:-r\d*\.?\d+)?(?:-s\d+)?$")


def recipe_headline(recipe: dict) -> dict[str, dict]:
    """A recipe's ``headline``: group -> {"variant": the variant whose runs are the group's shipped headline,
    "unnamed": the name of the group's runs without a variant}; {} when it names none. ``ConfigError``
    when it is not a mapping of mappings."""
    headline = recipe.get("headline") or {}
    if not isinstance(headline, dict) or not all(isinstance(entry, dict) for entry in headline.values()):
        raise ConfigError("the recipe's headline must map each group to {variant: ..., unnamed: ...}")
    return headline


def name_columns(run: str, headlines: dict[str, dict]) -> dict[str, str]:
    """The family columns of the run named ``run`` under a recipe's ``headlines`` (``recipe_headline``).

    ``group``: the first part of the name (``text``, ``vision``); ``variant``: the recipe variant
    (``text/variants/student-rekd-example-cost-s2027`` -> ``example-cost``; "" for the runs without one);
    ``family``: the name a report gives the run's family: its variant, else "" where those runs are the
    group's headline, else the recipe's ``unnamed`` ("no variant"); ``headline``: "True" when the run belongs
    to its group's headline family (the shipped models, their seeds and sweeps), else "False"."""
    run = str(run or "")
    group = run.split("/")[0]
    match = _VARIANT_RUN.search(run)
    variant = match["variant"] if match else ""
    chosen = headlines.get(group) or {}
    is_headline = variant == chosen.get("variant", "")
    family = variant if variant or is_headline else chosen.get("unnamed") or "no variant"
    return {"group": group, "variant": variant, "family": family, "headline": str(is_headline)}


def fill_row(row: dict, headlines: dict[str, dict]) -> dict[str, str]:
    """A row of any version of the file with every column of ``RESULT_FIELDS`` (its own values kept, other
    columns kept too): names lower-cased, ``modality`` read as ``task``, the family columns from the run's name
    where the row has none, ``source`` "training" and ``read_ratio`` its ``ratio`` where the row predates them."""
    filled = {str(key).strip().lower(): "" if value is None else str(value) for key, value in row.items()
              if key is not None}
    for old, new in ALIASES.items():
        if not filled.get(new) and filled.get(old):
            filled[new] = filled[old]
    if not filled.get("headline"):
        filled.update(name_columns(filled.get("run", ""), headlines))
    filled["source"] = filled.get("source") or TRAINING
    filled["read_ratio"] = filled.get("read_ratio") or filled.get("ratio", "")
    return {**{field: filled.get(field, "") for field in RESULT_FIELDS}, **filled}


def read_rows(path: str | Path, headlines: dict[str, dict] | None = None) -> list[dict[str, str]]:
    """The file's rows as text, each through ``fill_row``; [] when there is no file."""
    return _read(Path(path), headlines or {})[0] if Path(path).is_file() else []


def _read(path: Path, headlines: dict[str, dict]) -> tuple[list[dict[str, str]], list[str]]:
    """The file's rows through ``fill_row``, and the columns the file itself has (lower-cased, aliases resolved)."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = [fill_row(row, headlines) for row in reader]
        columns = [str(c).strip().lower() for c in reader.fieldnames or []]
    return rows, [ALIASES.get(c, c) for c in columns]


def load_results(path: str | Path, headlines: dict[str, dict] | None = None):
    """The results file as a DataFrame (rows through ``fill_row``): numbers as floats (NaN where empty or
    unreadable), ``kept`` and ``headline`` as booleans, text columns as strings; ``attrs["file_columns"]``: the
    columns the file has (aliases resolved). ``DataError`` when the file is missing, empty or not a CSV file."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no results file there")
    try:
        rows, columns = _read(path, headlines or {})
    except (csv.Error, UnicodeDecodeError, OSError) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from exc
    if not rows:
        raise DataError(f"{path}: the results file is empty")
    frame = pd.DataFrame(rows)
    frame.attrs["file_columns"] = columns
    for column in NUMERIC_FIELDS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    for column in BOOLEAN_FIELDS:
        frame[column] = frame[column].str.strip().str.lower().eq("true")
    return frame


def trained_rows(frame):
    """The rows of ``load_results`` that training wrote (one per run, read at its own ratio)."""
    return frame[frame.source != READ_AT]


def append_result(path: str | Path, row: dict) -> None:
    """Append one row (missing columns empty). Several sweep processes may append to one file at once: each
    takes an exclusive lock on it and writes its whole row before the next one may."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", newline="", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        writer = csv.DictWriter(fh, fieldnames=RESULT_FIELDS, lineterminator="\n", extrasaction="ignore")
        if fh.tell() == 0:
            writer.writeheader()
        else:
            _extend_header(fh)
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in RESULT_FIELDS})
        fh.flush()


def mark_kept(path: str | Path, names: list[str], kept: bool = True) -> None:
    """Set ``kept`` in the training rows of the runs ``names`` (the file rewritten in place, under the lock
    that ``append_result`` takes; every other field is written back as it was read)."""
    def mark(row: dict) -> dict:
        return {**row, "kept": str(kept)} if row["run"] in names else row

    _rewrite(path, mark)


def migrate(path: str | Path, headlines: dict[str, dict]) -> None:
    """Rewrite a results file of an older layout with every column of ``RESULT_FIELDS`` (``fill_row``; its
    values kept as they were written), under the lock that ``append_result`` takes."""
    _rewrite(path, lambda row: fill_row(row, headlines), RESULT_FIELDS)


def relabel(path: str | Path, headlines: dict[str, dict]) -> None:
    """Recompute every row's family columns (``name_columns``) under ``headlines``: run it after the recipe's
    headline changed, since rows keep the family columns they were written with."""
    _rewrite(path, lambda row: {**fill_row(row, headlines), **name_columns(row.get("run", ""), headlines)},
             RESULT_FIELDS)


def merge(source: str | Path, target: str | Path, headlines: dict[str, dict]) -> int:
    """Append to ``target`` the rows of ``source`` (a results file of any layout, such as another checkout's)
    that it does not hold yet: a training row per run, a reading per run and ratio. Returns how many."""
    def key(row: dict) -> tuple:
        return row["run"], row["source"], row["read_ratio"] if row["source"] == READ_AT else ""

    held = {key(row) for row in read_rows(target, headlines)}
    new = [row for row in read_rows(source, headlines) if key(row) not in held]
    for row in new:
        append_result(target, row)
    return len(new)


def _rewrite(path: str | Path, change, columns: list[str] | None = None) -> None:
    """Rewrite the file in place, each row through ``change``, under the appenders' lock."""
    with open(path, "r+", newline="", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        reader = csv.DictReader(fh)
        columns, rows = columns or reader.fieldnames or [], [change(row) for row in reader]
        fh.seek(0)
        fh.truncate()
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
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
        fh.seek(0, 2)
        return
    if columns != RESULT_FIELDS[:len(columns)]:
        raise ConfigError(f"{fh.name}: its columns are not those of a rekd results file ({header.strip()})")
    rows = fh.read()
    fh.seek(0)
    fh.truncate()
    fh.write(",".join(RESULT_FIELDS) + "\n" + rows)


def run_family(run: str, headlines: dict[str, dict]) -> tuple[str, bool]:
    """``(family, is_headline)`` of a run (see ``name_columns``): for names that have no results row yet,
    such as a checkpoint's directory."""
    columns = name_columns(run, headlines)
    return columns["family"], columns["headline"] == "True"


# ----------------------------------------------------------------------------------------------
# Models read at many ratios (read_at)
# ----------------------------------------------------------------------------------------------

RANGE, FIXED, READ_AWAY = "range model", "fixed, at its own ratio", "fixed, read away"  # the comparison's series
MODEL_KEY = ["task", "group", "role", "mode", "family", "backbone"]  # rows that are one kind of model
RANGE_TOLERANCE = 0.03  # the target of a range model: within 0.03 of the fixed-ratio models at each ratio


def range_comparison(frame, planned=()):
    """Accuracy against the ratio read at, for each kind of model (``MODEL_KEY``) that has a model trained
    over a range of ratios, a ``read_at`` reading or a run among ``planned`` (the runs a recipe reads, so that
    their kind shows before they are read): the range model read at each ratio (``RANGE``), the
    fixed-ratio models of that kind at their own ratios, seeds averaged (``FIXED``), and fixed-ratio models
    read away from their ratio (``READ_AWAY``). One row per (kind, series, ratio) with the mean accuracy, its
    standard deviation over the runs, their number and names; empty while nothing was read."""
    import pandas as pd

    selecting = frame[frame["mode"].isin(["re", "rekd"]) & frame.accuracy.notna()]
    is_range, is_read = selecting.ratio_range.astype(str).str.len() > 0, selecting.source == READ_AT
    kinds = selecting[is_range | is_read | selecting.run.isin(list(planned))][MODEL_KEY].drop_duplicates()
    fixed = selecting[~is_range & ~is_read]
    series = {RANGE: _like_for_like(selecting[is_range & is_read], fixed), FIXED: fixed,
              READ_AWAY: selecting[~is_range & is_read]}
    parts = []
    for name, rows in series.items():
        rows = rows.merge(kinds, on=MODEL_KEY)
        if rows.empty:
            continue
        stats = rows.groupby([*MODEL_KEY, "read_ratio"]).agg(
            accuracy=("accuracy", "mean"), accuracy_std=("accuracy", "std"), runs=("accuracy", "size"),
            run=("run", lambda names: ", ".join(sorted(set(names))))).reset_index()
        parts.append(stats.assign(series=name))
    columns = [*MODEL_KEY, "series", "ratio", "accuracy", "accuracy_std", "runs", "run"]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts).rename(columns={"read_ratio": "ratio"})[columns].reset_index(drop=True)


def _like_for_like(range_rows, fixed_rows):
    """The range models trained for as many epochs as the fixed-ratio models of their kind (the most common
    count among those), so that a longer-trained range model is not averaged into the comparison; kinds
    without fixed-ratio models keep all theirs."""
    usual = fixed_rows.groupby(MODEL_KEY).epochs.agg(lambda epochs: epochs.mode().max()).rename("usual_epochs")
    rows = range_rows.merge(usual.reset_index(), on=MODEL_KEY, how="left")
    return rows[rows.usual_epochs.isna() | (rows.epochs == rows.usual_epochs)].drop(columns="usual_epochs")


def range_gaps(comparison):
    """For each kind of model and ratio of ``range_comparison``: the range model's accuracy, the fixed-ratio
    models' at that ratio, the gap (range minus fixed; NaN where either is missing) and whether the range
    model is at most ``RANGE_TOLERANCE`` below (None where the gap is missing)."""
    table = comparison.pivot_table(index=[*MODEL_KEY, "ratio"], columns="series", values="accuracy", aggfunc="first")
    table = table.reindex(columns=[RANGE, FIXED, READ_AWAY]).reset_index()
    table["gap"] = table[RANGE] - table[FIXED]
    table["within"] = [None if gap != gap else bool(gap >= -RANGE_TOLERANCE) for gap in table.gap]
    return table
