"""Self-describing checkpoint directories, in the spirit of ``save_pretrained``.

A checkpoint is one directory:

- ``config.json``: task, mode, ratio, labels, backbone architecture, processor and feature grid,
  the training settings and the teacher it learned from;
- ``model.safetensors``: generator and predictor weights (never a pickle), float32, or float16 where
  config.json says ``"weights_dtype": "float16"`` (half the size; loading casts them back to float32).
  Frozen weights that an installed package already holds (a packaged preset's layers kept as they were:
  ``--freeze-layers``, a generator's word embeddings) are not stored twice: config.json's ``package_tensors``
  lists them, and loading takes them from the package, its sha256 checked;
- ``tokenizer/`` (text models);
- ``metrics.json``: dev and test metrics; ``log.jsonl``: the per-epoch training log;
- ``resume.safetensors``, only while a run is training: the state its next epoch starts from
  (resume.py), its JSON part in the file's metadata.

Saving writes a sibling temporary directory and renames it into place, so a killed run leaves
either the previous checkpoint or the new one, never a half-written one.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .backbones import create_backbone, packaged_weights
from .errors import CheckpointError, RekdError, first_line
from .model import RationaleModel
from .model_config import WEIGHTS_DTYPES, BackboneConfig, ModelConfig
from .processing import load_processor

FORMAT = "rekd-checkpoint"
VERSION = 1
CONFIG_FILE, WEIGHTS_FILE, METRICS_FILE, LOG_FILE = "config.json", "model.safetensors", "metrics.json", "log.jsonl"
RESUME_FILE = "resume.safetensors"
REQUIRED_KEYS = ("task", "mode", "ratio", "labels", "backbone", "dropout", "processor")
# config.json's optional ``weights_dtype``: how model.safetensors stores the floating-point weights
STORED_DTYPES = {name: getattr(torch, name) for name in WEIGHTS_DTYPES}


def save_checkpoint(model: RationaleModel, path: str | Path, *, state_dict: dict | None = None,
                    extra_config: dict | None = None, metrics: dict | None = None,
                    log: list[dict] | None = None, resume: tuple[dict, dict] | None = None) -> Path:
    """Atomically write ``model`` (or ``state_dict`` for its architecture) to the directory ``path``.

    An existing directory is replaced only if it is a checkpoint itself (or empty): a path that
    holds anything else is refused, so nothing of the user's is overwritten. ``resume`` (tensors, JSON
    data) is the state an interrupted run goes on from (resume.py); saved with the weights it belongs to.
    """
    path = Path(path)
    config = {"format": FORMAT, "version": VERSION, **model.config.to_dict(), **(extra_config or {}),
              "processor": model.processor.to_config(), "feature_grid": model.processor.grid()}
    state = state_dict or model.state_dict()
    config.pop("package_tensors", None)
    held = package_held(model, state, config.get("weights_dtype", "float32"))
    if held:
        config["package_tensors"] = held
    tensors = {k: v.detach().to("cpu").contiguous()
               for k, v in as_stored(state, config.get("weights_dtype", "float32")).items() if k not in held}
    with _written_into_place(path) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        model.processor.save(tmp)
        _write_json(tmp / CONFIG_FILE, config)
        _write_json(tmp / METRICS_FILE, metrics or {})
        (tmp / LOG_FILE).write_text("".join(json.dumps(row) + "\n" for row in log or []))
        if resume is not None:
            state, info = resume
            save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / RESUME_FILE),
                      metadata={"info": json.dumps(info, default=_json_default)})
    return path


def as_stored(state: dict[str, torch.Tensor], weights_dtype: str) -> dict[str, torch.Tensor]:
    """The floating-point tensors of ``state`` in the dtype a checkpoint stores them in (``weights_dtype``, a
    key of STORED_DTYPES); loading casts them back to the model's float32."""
    dtype = STORED_DTYPES[weights_dtype]
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}


def package_held(model: RationaleModel, state: dict[str, torch.Tensor], weights_dtype: str = "float32") -> list[str]:
    """The keys of ``state`` that need not be stored: parameters frozen in ``model`` whose values, in the dtype
    the checkpoint stores (``weights_dtype``), are those of its packaged preset's backbone as built from the
    package (none for any other backbone). Compared once rounded, since a run that started from a float16
    checkpoint (``init_from``) holds the package's weights rounded, as its test metrics were computed."""
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    source = packaged_weights(model.config.backbone) if frozen else None
    if source is None:
        return []
    reference = _package_state(json.dumps(model.config.backbone.to_dict(), sort_keys=True), source)
    dtype = STORED_DTYPES[weights_dtype]
    held = []
    for name in frozen:
        value = reference.get(name.partition(".backbone.")[2])
        if value is not None and torch.equal(state[name].detach().to("cpu", dtype), value.to(dtype)):
            held.append(name)
    return held


@functools.lru_cache(maxsize=2)
def _package_state(backbone_json: str, source: str) -> dict[str, torch.Tensor]:
    """A packaged preset backbone's weights as ``create_backbone`` builds it from the package (cached: each
    epoch's save compares with them)."""
    backbone = create_backbone(BackboneConfig.from_dict(json.loads(backbone_json)), source)
    return {k: v.detach().to(torch.float32) for k, v in backbone.state_dict().items()}


def with_package_tensors(state: dict[str, torch.Tensor], config: dict,
                         model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A checkpoint's stored ``state`` completed with the tensors its config lists as held by the package:
    ``model``'s (a model built from that package), in the dtype the checkpoint stores the others in."""
    held = config.get("package_tensors") or []
    own = model.state_dict()
    dtype = STORED_DTYPES[config.get("weights_dtype", "float32")]
    return {**{k: own[k].detach().to("cpu", dtype, copy=True) for k in held if k in own}, **state}


def copy_checkpoint(source: str | Path, path: str | Path) -> Path:
    """Atomically copy the complete checkpoint ``source`` to the directory ``path`` (replaced only if
    it is a checkpoint itself, as in ``save_checkpoint``): ship a run trained elsewhere as it is."""
    source, path = Path(source), Path(path)
    if read_config(source).get("status") != "complete":
        raise CheckpointError(f"{source} is not a complete checkpoint (its run has not finished); not copying it")
    with _written_into_place(path) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(RESUME_FILE))
    return path


def check_writable(path: str | Path) -> None:
    """Refuse a destination that holds anything but a rekd checkpoint (or nothing)."""
    path = Path(path)
    if path.exists() and not _replaceable(path):
        raise CheckpointError(f"{path} exists and is not a rekd checkpoint; refusing to overwrite it")


def read_config(path: str | Path) -> dict:
    """The validated ``config.json`` of a checkpoint directory."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no checkpoint directory there")
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(f"{config_path}: missing; {path} is not a complete rekd checkpoint")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{config_path}: corrupt JSON ({exc})") from exc
    missing = [k for k in REQUIRED_KEYS if not isinstance(config, dict) or k not in config]
    if missing or config.get("format") != FORMAT:
        raise CheckpointError(f"{config_path}: not a rekd checkpoint config "
                              f"(missing: {', '.join(missing) or 'format'})")
    return config


def read_metrics(path: str | Path) -> dict:
    """``metrics.json`` of a checkpoint ({} when absent or unreadable)."""
    try:
        return json.loads((Path(path) / METRICS_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def read_log(path: str | Path) -> list[dict]:
    """The per-epoch training log of a checkpoint."""
    log_path = Path(path) / LOG_FILE
    if not log_path.is_file():
        return []
    return [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> RationaleModel:
    """Restore a model (with its processor) in eval mode on ``device``, ready to explain inputs."""
    path = Path(path)
    config = read_config(path)
    weights_path = path / WEIGHTS_FILE
    state = read_weights(path)
    processor = load_processor(config["processor"], path)
    held = config.get("package_tensors") or []
    try:
        model_config = ModelConfig.from_dict(config)
    except Exception as exc:
        raise CheckpointError(f"{path / CONFIG_FILE}: cannot rebuild the model ({exc})") from exc
    pretrained = None
    if held:  # frozen layers of a packaged preset, stored by the package rather than here
        try:
            pretrained = packaged_weights(model_config.backbone)
        except RekdError as exc:
            raise CheckpointError(f"{path}: its frozen layers come from an installed package: "
                                  f"{first_line(exc)}") from exc
        if pretrained is None:
            raise CheckpointError(f"{path / CONFIG_FILE}: lists package_tensors, but its backbone "
                                  f"{model_config.backbone.source!r} is not a packaged preset")
    try:
        model = RationaleModel(model_config, processor, pretrained)
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{path / CONFIG_FILE}: cannot rebuild the model ({exc})") from exc
    state = with_package_tensors(state, config, model)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # strict=False still raises on tensors of the wrong shape
        raise CheckpointError(f"{weights_path}: weights do not match config.json ({_mismatch_detail(exc)})") from exc
    if result.missing_keys or result.unexpected_keys:
        detail = (result.missing_keys or result.unexpected_keys)[:3]
        raise CheckpointError(f"{weights_path}: weights do not match config.json "
                              f"({len(result.missing_keys)} missing, {len(result.unexpected_keys)} unexpected, "
                              f"e.g. {detail})")
    model.checkpoint_path = path
    return model.to(device).eval()


@contextlib.contextmanager
def _written_into_place(path: Path) -> Iterator[Path]:
    """A new sibling temporary directory to fill; once filled it replaces ``path`` (a checkpoint, or
    nothing) in one rename, and if filling fails it is removed: ``path`` is never half-written."""
    check_writable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
        _fsync_tree(tmp)
        _swap_into_place(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replaceable(path: Path) -> bool:
    return path.is_dir() and (not any(path.iterdir()) or (path / CONFIG_FILE).is_file())


def _swap_into_place(tmp: Path, path: Path) -> None:
    if not path.exists():
        os.replace(tmp, path)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
    os.replace(path, old / "previous")
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(old / "previous", path)  # put the previous checkpoint back
        shutil.rmtree(old, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint's ``model.safetensors`` (on the CPU)."""
    weights_path = Path(path) / WEIGHTS_FILE
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path}: missing; the checkpoint is incomplete")
    try:
        return load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights_path}: corrupt weights file ({exc})") from exc


def cpu_snapshot(module: torch.nn.Module) -> dict:
    """A CPU copy of the module's weights as they are now (a best epoch's, or a resume state's)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def read_resume(path: str | Path) -> tuple[dict[str, torch.Tensor], dict] | None:
    """The resume state of a checkpoint (tensors, JSON data), or None when it has none."""
    resume_path = Path(path) / RESUME_FILE
    if not resume_path.is_file():
        return None
    try:
        with safe_open(str(resume_path), framework="pt") as fh:
            info = json.loads((fh.metadata() or {})["info"])
            return {k: fh.get_tensor(k) for k in fh.keys()}, info
    except (SafetensorError, OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{resume_path}: corrupt resume state ({exc})") from exc


def stored_form(data: dict) -> dict:
    """``data`` as config.json would hold it after a save (paths as strings, tuples as lists), to
    compare a run's settings with a saved checkpoint's."""
    return json.loads(json.dumps(data, default=_json_default))


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.Tensor):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint config")


def _mismatch_detail(exc: Exception) -> str:
    """The first specific line of a load_state_dict error (its first line only says that it failed)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[1] if len(lines) > 1 else (lines[0] if lines else type(exc).__name__)


def _fsync_tree(directory: Path) -> None:
    for root, _, files in os.walk(directory):
        for name in files:
            with open(os.path.join(root, name), "rb") as fh:
                os.fsync(fh.fileno())
