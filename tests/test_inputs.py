"""``rekd_core.inputs``: the one reader of texts, images and devices, shared by ``rekd explain`` and the
dashboard. The CLI and the dashboard must see the same pixels (EXIF rotation, transparency on white) and
the same characters (any encoding, named), and refuse the same bad files with the same one line."""
from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rekd_core.cli import _read_input, main
from rekd_core.errors import ConfigError, DataError
from rekd_core.inputs import decode_text, decoding_notice, read_image, read_text, resolve_device, to_rgb
from tests.core_fixtures import image_bytes, png_claiming

pytest_plugins = ["tests.core_fixtures"]

ORIENTATION = 0x0112  # the EXIF tag
LATIN1_REVIEW = "Tr\xe8s \xe9mouvant, fillerab splendid, g\xe9nial."




def sideways_jpeg() -> bytes:
    """A 40x20 JPEG, left half red and right half blue, tagged "rotate 90 degrees clockwise to view"
    (EXIF orientation 6, what phones write for a portrait): upright, it is 20x40, red on top."""
    image = Image.new("RGB", (40, 20), (230, 20, 20))
    image.paste((20, 20, 230), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    return image_bytes(image, "JPEG", exif=exif.tobytes(), quality=95)


def half_transparent_png() -> bytes:
    """A 16x16 RGBA PNG: left half opaque green, right half fully transparent but holding red."""
    image = Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    image.paste((0, 200, 0, 255), (0, 0, 8, 16))
    return image_bytes(image, "PNG")


def cli_image(path: Path) -> Image.Image:
    """What ``rekd explain --image PATH`` hands to the model."""
    return _read_input(argparse.Namespace(text=None, text_file=None, image=str(path)), "vision")


def run_cli(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(rc: int, err: str) -> str:
    assert rc == 2 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rekd: error: "), err
    return lines[0]


@pytest.fixture
def B():
    """The dashboard's readers of uploads and its device choice (dashboard/inputs.py, environment.py). Imported, not
    skipped when absent: a renamed module must fail here, not silently skip the dashboard's half of each test."""
    from types import SimpleNamespace

    from dashboard.environment import pick_device
    from dashboard.inputs import parse_image_upload, parse_text_upload
    return SimpleNamespace(parse_image_upload=parse_image_upload, parse_text_upload=parse_text_upload,
                           pick_device=pick_device)


@pytest.fixture
def explained_inputs(monkeypatch) -> list:
    """Every input ``rekd explain`` hands to ``rekd_core.explain.explain``, which still runs."""
    seen: list = []
    module = importlib.import_module("rekd_core.explain")  # the package re-exports a function of that name
    original = module.explain

    def spy(model, inputs, *args, **kwargs):
        seen.extend(inputs)
        return original(model, inputs, *args, **kwargs)

    monkeypatch.setattr(module, "explain", spy)
    return seen


# ---------------------------------------------------------------------------------------------
# images: the CLI and the dashboard see the same pixels


@pytest.mark.parametrize("make, upright", [
    (sideways_jpeg, "rotated"),
    (half_transparent_png, "on white"),
])
def test_cli_and_dashboard_see_the_same_pixels(B, tmp_path, make, upright):
    data = make()
    path = tmp_path / "input.img"
    path.write_bytes(data)
    cli = np.asarray(cli_image(path))
    dashboard = np.asarray(B.parse_image_upload("input.img", data).value)
    assert cli.dtype == np.uint8 and cli.shape[2] == 3
    np.testing.assert_array_equal(cli, dashboard)
    # and they are the right pixels, which the old `rekd explain` reader (open + convert("RGB")) missed:
    if upright == "rotated":
        assert cli.shape[:2] == (40, 20)  # height 40, width 20: turned upright
        assert cli[5, 10, 0] > 200 and cli[5, 10, 2] < 60  # red on top
        assert cli[35, 10, 2] > 200 and cli[35, 10, 0] < 60  # blue below
    else:
        assert tuple(cli[8, 12]) == (255, 255, 255)  # transparent: white, not the red it holds
        assert tuple(cli[8, 2]) == (0, 200, 0)


def test_rekd_explain_reads_the_image_the_dashboard_shows(B, vision_re_ckpt, tmp_path, capsys, explained_inputs):
    path = tmp_path / "portrait.jpg"
    path.write_bytes(sideways_jpeg())
    rc, out, err = run_cli(capsys, "explain", vision_re_ckpt, "--image", path, "--json")
    assert rc == 0, err
    assert json.loads(out)["model"]["label"]
    [seen] = explained_inputs
    shown = B.parse_image_upload("portrait.jpg", path.read_bytes()).value
    np.testing.assert_array_equal(np.asarray(seen), np.asarray(shown))
    assert seen.size == (20, 40)


def test_paths_bytes_and_pil_images_are_read_alike(tmp_path):
    data = sideways_jpeg()
    path = tmp_path / "p.jpg"
    path.write_bytes(data)
    from_path, from_bytes = read_image(path), read_image(data, "p.jpg")
    with Image.open(path) as opened:
        from_pil = read_image(opened)
    for image in (from_bytes, from_pil):
        np.testing.assert_array_equal(np.asarray(from_path), np.asarray(image))


def test_large_images_are_refused_or_shrunk():
    with pytest.raises(DataError, match=r"huge.png: the image is 9,000x9,000 pixels \(81 megapixels\)"):
        read_image(png_claiming(9000, 9000), "huge.png")
    big = read_image(image_bytes(Image.new("RGB", (3000, 2500), (200, 30, 30)), "JPEG"), "big.jpg")
    assert big.size == (2048, 1707)
    assert read_image(Image.new("RGB", (3000, 2500)), max_side=None).size == (3000, 2500)


def test_to_rgb_handles_colour_modes():
    assert to_rgb(Image.new("RGBA", (2, 2), (255, 0, 0, 0))).getpixel((0, 0)) == (255, 255, 255)  # transparent: white
    assert to_rgb(Image.new("LA", (2, 2), (0, 255))).getpixel((0, 0)) == (0, 0, 0)
    grey16 = Image.fromarray(np.full((2, 2), 65535, dtype=np.uint16))
    assert to_rgb(grey16).getpixel((0, 0)) == (255, 255, 255)
    floats = Image.fromarray(np.array([[0.0, 1.0], [0.5, np.nan]], dtype=np.float32))
    assert to_rgb(floats).getpixel((1, 0)) == (255, 255, 255)
    assert to_rgb(Image.new("CMYK", (2, 2))).mode == "RGB"
    assert to_rgb(Image.new("1", (2, 2))).mode == "RGB"


def test_bad_images_get_one_clear_message(B, vision_re_ckpt, tmp_path, capsys):
    noisy = image_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)), "PNG")
    cases = {
        "corrupt.png": (noisy[: len(noisy) // 2], "corrupt.png: a corrupt or truncated image"),
        "notes.png": (b"these are my notes, not an image", "notes.png: not an image file"),
        "empty.jpg": (b"", "empty.jpg: the file is empty"),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(DataError) as dashboard:
            B.parse_image_upload(name, data)
        assert str(dashboard.value).startswith(message) and "\n" not in str(dashboard.value)
        line = one_line_error(*run_cli(capsys, "explain", vision_re_ckpt, "--image", path)[::2])
        assert line == "rekd: error: " + str(dashboard.value).replace(name, str(path), 1)  # the same line
    line = one_line_error(*run_cli(capsys, "explain", vision_re_ckpt, "--image", tmp_path / "absent.png")[::2])
    assert line.endswith("absent.png: no such file")
    line = one_line_error(*run_cli(capsys, "explain", vision_re_ckpt, "--image", tmp_path)[::2])
    assert line.endswith("is a directory, not a file")


# ---------------------------------------------------------------------------------------------
# texts: any encoding, named; binary and empty files refused


def test_rekd_explain_decodes_a_latin1_file(B, text_re_ckpt, tmp_path, capsys, explained_inputs):
    path = tmp_path / "critique.txt"
    path.write_bytes(LATIN1_REVIEW.encode("latin-1"))
    rc, out, err = run_cli(capsys, "explain", text_re_ckpt, "--text-file", path, "--json")
    assert rc == 0, err
    assert json.loads(out)["model"]["label"]
    assert explained_inputs == [LATIN1_REVIEW]
    [note] = err.strip().splitlines()
    assert note.startswith(f"rekd: note: {path}: not UTF-8 text; decoded as ")
    encoding = note.split("decoded as ")[1].split()[0]
    assert LATIN1_REVIEW.encode("latin-1").decode(encoding) == LATIN1_REVIEW
    # the dashboard decodes the same upload to the same text, with the same notice
    [item] = B.parse_text_upload("critique.txt", path.read_bytes())
    assert item.value == LATIN1_REVIEW and item.notice == decoding_notice("critique.txt", encoding)


def test_text_decoding():
    assert decode_text("\ufeffcafé".encode("utf-8"), "bom.txt") == ("café", "utf-8")
    decoded = decode_text(LATIN1_REVIEW.encode("utf-16"), "u16.txt")
    assert decoded.text == LATIN1_REVIEW and "utf_16" in decoded.encoding
    assert decode_text("caf\xe9 tr\xe8s bien".encode("latin-1"), "l.txt") == ("café très bien", "cp1252")
    assert decoding_notice("u.txt", "utf-8") is None
    for data, message in [(b"", "x.txt: the file is empty"), (b" \n\t\n", "x.txt: the file is empty"),
                          (bytes(range(256)) * 8, "x.txt: not a text file"),
                          (image_bytes(Image.new("RGB", (8, 8)), "PNG"), "x.txt: not a text file")]:
        with pytest.raises(DataError) as caught:
            decode_text(data, "x.txt")
        assert str(caught.value).startswith(message) and "UTF-8" not in str(caught.value)


def test_text_paths_and_bytes_are_read_alike(tmp_path):
    path = tmp_path / "r.txt"
    path.write_bytes(LATIN1_REVIEW.encode("cp1252"))
    assert read_text(path) == read_text(path.read_bytes(), "r.txt")
    with pytest.raises(DataError, match="absent.txt: no such file"):
        read_text(tmp_path / "absent.txt")
    with pytest.raises(DataError, match="is a directory"):
        read_text(tmp_path)


def test_a_binary_text_file_gets_one_clear_message(B, text_re_ckpt, tmp_path, capsys):
    path = tmp_path / "binary.txt"
    path.write_bytes(bytes(range(256)) * 8)
    line = one_line_error(*run_cli(capsys, "explain", text_re_ckpt, "--text-file", path)[::2])
    assert line == f"rekd: error: {path}: not a text file (it holds binary data)"
    with pytest.raises(DataError, match="binary.txt: not a text file"):
        B.parse_text_upload("binary.txt", path.read_bytes())


# ---------------------------------------------------------------------------------------------
# devices


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_an_absent_gpu_is_one_clear_config_error(B, text_re_ckpt, capsys):
    with pytest.raises(ConfigError) as caught:
        resolve_device("cuda")
    message = str(caught.value)
    assert "\n" not in message and "cuda" in message and "not available" in message
    assert resolve_device("auto") == torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    line = one_line_error(*run_cli(capsys, "explain", text_re_ckpt, "--text", "splendid", "--device", "cuda")[::2])
    assert line == f"rekd: error: {message}"
    device, warning = B.pick_device("cuda")  # the dashboard falls back to the CPU and says why
    assert device == torch.device("cpu") and warning == f"{message}; running on the CPU instead"
