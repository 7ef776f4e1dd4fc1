"""``csv:DIR`` and ``jsonl:DIR``: a user's own texts, ``DIR/{train,test,dev}.<extension>`` with columns text and
label (dev optional).

Read with the standard library's csv and json rather than `datasets.load_dataset("csv"/"json")`: the latter infers
column types (a CSV text column of numbers comes back as float64), writes an Arrow cache under ~/.cache and prints
progress bars, and its errors do not say which row is bad."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

from .data_types import DatasetBundle, RawSplit
from .errors import DataError

_INTEGER = re.compile(r"[+-]?\d+")


def read_jsonl(file: Path) -> list[dict]:
    """The JSON objects of a JSON Lines file (blank lines skipped)."""
    records = []
    try:
        with open(file, encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{file}: line {line_number} is not valid JSON: {exc.msg}") from exc
                if not isinstance(record, dict):
                    raise DataError(f"{file}: line {line_number} is not a JSON object")
                records.append(record)
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {file}: {exc}") from exc
    return records


def _read_csv(file: Path) -> list[dict]:
    """The rows of a CSV file with a header line, as dicts."""
    try:
        with open(file, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None:
                raise DataError(f"{file}: empty file (a header line 'text,label' is needed)")
            return list(reader)
    except csv.Error as exc:
        raise DataError(f"{file}: malformed CSV: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {file}: {exc}") from exc


def _label_name(value: Any, where: str) -> str:
    """A label as the string it is shown as: ints (or CSV cells holding an int) as their decimal form."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise DataError(f"{where}: label must be a string or an integer, got {value!r}")
    if isinstance(value, int):
        return str(value)
    value = value.strip()
    if not value:
        raise DataError(f"{where}: empty label")
    return str(int(value)) if _INTEGER.fullmatch(value) else value


def _label_order(name: str) -> tuple:
    """Sort key: integer labels numerically, then string labels alphabetically."""
    return (0, int(name), "") if _INTEGER.fullmatch(name) else (1, 0, name)


def load_table(spec: str, root: Path | None, extension: str) -> DatasetBundle:
    """``root/{train,test,dev}.<extension>`` with columns text and label; dev is optional."""
    assert root is not None
    read = _read_csv if extension == "csv" else read_jsonl
    rows_by_split: dict[str, tuple[Path, list[tuple[str, str]]]] = {}
    for split in ("train", "test", "dev"):
        file = root / f"{split}.{extension}"
        if not file.is_file():
            if split == "dev":
                continue
            raise DataError(f"dataset spec {spec!r}: file not found: {file}")
        records = read(file)
        if not records:
            raise DataError(f"{file}: no examples")
        examples = []
        for number, record in enumerate(records, start=1):
            where = f"{file}: example {number}"
            missing = [column for column in ("text", "label") if column not in record]
            if missing:
                raise DataError(f"{where}: missing column {', '.join(repr(c) for c in missing)}")
            text = record["text"]
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"{where}: empty or non-string text")
            examples.append((text, _label_name(record["label"], where)))
        rows_by_split[split] = (file, examples)

    labels = sorted({label for _, label in rows_by_split["train"][1]}, key=_label_order)
    index = {label: i for i, label in enumerate(labels)}
    splits = {}
    for split, (file, examples) in rows_by_split.items():
        unknown = sorted({label for _, label in examples} - index.keys(), key=_label_order)
        if unknown:
            raise DataError(
                f"{file}: label(s) {', '.join(unknown)} do not occur in train (labels: {', '.join(labels)})"
            )
        splits[split] = RawSplit([text for text, _ in examples], [index[label] for _, label in examples])
    return DatasetBundle("text", labels, splits["train"], splits["test"], splits.get("dev"))
