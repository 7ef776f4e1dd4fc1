"""``aclimdb:PATH``: the Large Movie Review Dataset as distributed, a folder or its .tar.gz."""
from __future__ import annotations

import re
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from .data_types import POLARITY_LABELS, DatasetBundle, RawSplit
from .errors import DataError

_ACLIMDB_FILE = re.compile(r"(?:^|/)(train|test)/(pos|neg)/([^/]+\.txt)$")


def _aclimdb_files(path: Path) -> Iterator[tuple[str, str, str, bytes]]:
    """Yield ``(split, polarity, file name, raw bytes)`` for every review under ``path``.

    ``path`` is the tarball (read in one streaming pass, since random access into a 50,000-member
    gzip stream is slow), the ``aclImdb`` folder, or a folder holding ``aclImdb/``.
    """
    if path.is_file():
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                match = _ACLIMDB_FILE.search(member.name)
                if match and member.isfile():
                    handle = tar.extractfile(member)
                    if handle is not None:
                        yield match.group(1), match.group(2), match.group(3), handle.read()
        return
    root = path / "aclImdb" if (path / "aclImdb").is_dir() else path
    for split in ("train", "test"):
        for polarity in POLARITY_LABELS:
            for file in sorted((root / split / polarity).glob("*.txt")):
                yield split, polarity, file.name, file.read_bytes()


def load_aclimdb(spec: str, path: Path | None) -> DatasetBundle:
    """aclImdb reviews; examples sorted by ``<polarity>/<file name>`` so the order never depends on the source."""
    assert path is not None
    examples: dict[str, list[tuple[str, str, int]]] = {"train": [], "test": []}
    try:
        for split, polarity, name, raw in _aclimdb_files(path):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}: {split}/{polarity}/{name} is not UTF-8 text") from exc
            examples[split].append((f"{polarity}/{name}", text, POLARITY_LABELS.index(polarity)))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(f"cannot read aclImdb archive {path}: {exc}") from exc
    splits = {}
    for split, rows in examples.items():
        if not rows:
            raise DataError(f"{path}: no aclImdb reviews found under {split}/pos or {split}/neg")
        rows.sort(key=lambda row: row[0])
        splits[split] = RawSplit([text for _, text, _ in rows], [target for _, _, target in rows])
    return DatasetBundle("text", list(POLARITY_LABELS), splits["train"], splits["test"])
