"""``eraser-movies:DIR``: ERASER movie reviews with their human rationales (``DIR/docs/<docid>`` and
``DIR/{train,val,test}.jsonl``; val becomes dev), the evidence as merged token spans."""
from __future__ import annotations

from pathlib import Path

from .data_table import read_jsonl
from .data_types import POLARITY_LABELS, DatasetBundle, RawSplit
from .errors import DataError


def _merge_spans(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted union of ``[start, end)`` spans: overlapping or touching spans become one."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _eraser_split(file: Path, docs: Path) -> RawSplit:
    """One ERASER ``.jsonl`` annotation file: document texts, neg/pos targets and merged evidence."""
    texts, targets, evidence = [], [], []
    for record in read_jsonl(file):
        annotation = record.get("annotation_id")
        where = f"{file}: annotation {annotation!r}"
        docid = (record.get("docids") or [annotation])[0]
        if not isinstance(docid, str) or not docid or Path(docid).name != docid or docid.startswith("."):
            raise DataError(f"{where}: invalid document id {docid!r}")
        try:
            tokens = (docs / docid).read_text(encoding="utf-8").split()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{where}: cannot read document {docs / docid}") from exc
        label = str(record.get("classification", "")).lower()
        if label not in POLARITY_LABELS:
            raise DataError(f"{where}: classification must be POS or NEG, got {record.get('classification')!r}")
        spans = []
        for group in record.get("evidences") or []:
            for item in group:
                if item.get("docid", docid) != docid:
                    continue
                start, end = item.get("start_token"), item.get("end_token")
                if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end <= len(tokens)):
                    raise DataError(f"{where}: evidence span ({start}, {end}) is outside the {len(tokens)} tokens")
                if start < end:  # the real data holds a few empty spans; they mark nothing
                    spans.append((start, end))
        texts.append(" ".join(tokens))
        targets.append(POLARITY_LABELS.index(label))
        evidence.append(_merge_spans(spans))
    if not texts:
        raise DataError(f"{file}: no examples")
    return RawSplit(texts, targets, evidence)


def load_eraser_movies(spec: str, root: Path | None) -> DatasetBundle:
    """ERASER layout: ``root/docs/<docid>`` and ``root/{train,val,test}.jsonl``; val becomes dev."""
    assert root is not None
    docs = root / "docs"
    if not docs.is_dir():
        raise DataError(f"dataset spec {spec!r}: folder not found: {docs}")
    splits = {}
    for split, file_name in (("train", "train.jsonl"), ("test", "test.jsonl"), ("dev", "val.jsonl")):
        file = root / file_name
        if file.is_file():
            splits[split] = _eraser_split(file, docs)
        elif split != "dev":
            raise DataError(f"dataset spec {spec!r}: file not found: {file}")
    return DatasetBundle("text", list(POLARITY_LABELS), splits["train"], splits["test"], splits.get("dev"))
