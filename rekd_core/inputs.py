"""One way to read an input, shared by the ``rekd`` command, the dashboard and training.

Texts (bytes or a file), images (bytes, a file or a PIL image) and the device to run on are read
here and nowhere else, so that ``rekd explain --image x.png`` and the dashboard see the same pixels,
decode the same characters and pick the same device. Every problem the user can fix raises a
``RekdError`` subclass (``DataError`` for inputs, ``ConfigError`` for devices) with one clear line.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal, NamedTuple, Union, get_args

import numpy as np
from PIL import Image, ImageOps

from .errors import ConfigError, DataError, first_line

if TYPE_CHECKING:
    import torch

PathLike = Union[str, "os.PathLike[str]"]

Device = Literal["auto", "cpu", "cuda", "mps"]  # where models run: auto picks cuda, then mps, then cpu
DEVICES: tuple[str, ...] = get_args(Device)
MAX_IMAGE_PIXELS = 40_000_000  # larger images are refused before they are decoded (memory, decompression bombs)
MAX_IMAGE_SIDE = 2048  # decoded images are shrunk to this (the models resize to far less anyway)
# Among decodings charset-normalizer finds equally plausible (short texts often tie), the encodings that
# Western Windows and older Unix tools wrote, most common first.
PREFERRED_LEGACY_ENCODINGS = ("cp1252", "latin_1", "iso8859_15")


# ----------------------------------------------------------------------------------------------
# Devices
# ----------------------------------------------------------------------------------------------


def resolve_device(device: str = "auto") -> "torch.device":
    """``auto`` -> cuda, then mps, then cpu. An explicit device that is absent here (or unknown) raises a
    ``ConfigError`` with one line, rather than failing later, deep inside torch, with a traceback."""
    import torch

    name = str(device).strip().lower()
    kind, _, index = name.partition(":")
    if kind not in DEVICES or (index and (kind != "cuda" or not index.isdigit())):
        raise ConfigError(f"unknown device {device!r}: pick one of {', '.join(DEVICES)}")
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if kind == "auto":
        return torch.device(next(d for d in ("cuda", "mps", "cpu") if available[d]))
    if not available[kind]:
        missing = "no CUDA GPU was found" if kind == "cuda" else "Apple MPS is absent"
        raise ConfigError(f"{missing}: device {device!r} is not available here")
    if index and int(index) >= torch.cuda.device_count():
        raise ConfigError(f"only {torch.cuda.device_count()} CUDA GPU(s) here: device {device!r} is not available")
    return torch.device(name)


# ----------------------------------------------------------------------------------------------
# Texts
# ----------------------------------------------------------------------------------------------


class DecodedText(NamedTuple):
    """A text and the encoding its bytes were decoded with ("utf-8", else charset-normalizer's name)."""

    text: str
    encoding: str


def decoding_notice(name: str, encoding: str) -> str | None:
    """The line that tells the user a file was not UTF-8 and which encoding was used; None for UTF-8."""
    if encoding == "utf-8":
        return None
    return f"{name}: not UTF-8 text; decoded as {encoding} (if letters look wrong, save the file as UTF-8)"


def _looks_like_text(text: str, sample: int = 100_000) -> bool:
    """No NUL and (almost) no other control characters in its first ``sample`` characters: what a text file
    holds, and binary data does not."""
    head = text[:sample]
    if "\x00" in head:
        return False
    controls = sum(1 for c in head if c < " " and c not in "\t\n\r\f\v")
    return controls <= len(head) // 100


def decode_text(data: bytes, name: str) -> DecodedText:
    """Bytes as ``(text, encoding)``: UTF-8 (with or without BOM) first; else the encoding charset-normalizer
    finds most plausible, so that a review saved in cp1252 or UTF-16 is read rather than refused. One clear
    ``DataError`` for an empty, blank or binary file (binary data would otherwise decode as gibberish)."""
    if not data:
        raise DataError(f"{name}: the file is empty")
    try:
        text, encoding = data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = "", ""
    if not encoding or not _looks_like_text(text):  # not UTF-8, or UTF-8 bytes that are no text (UTF-16?)
        from charset_normalizer import from_bytes

        matches = list(from_bytes(data))
        if matches:
            best = matches[0]
            tied = [m for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)]
            best = next((m for preferred in PREFERRED_LEGACY_ENCODINGS for m in tied if m.encoding == preferred), best)
            text, encoding = str(best), best.encoding
        if not matches or not _looks_like_text(text):
            raise DataError(f"{name}: not a text file (it holds binary data)")
    if not text.strip():
        raise DataError(f"{name}: the file is empty (it holds only white space)")
    return DecodedText(text, encoding)


def _open(path: PathLike, name: str) -> BinaryIO:
    """``path`` opened for reading bytes, with one clear ``DataError`` (naming it ``name``) for a missing,
    directory or unreadable path."""
    try:
        return Path(path).open("rb")
    except FileNotFoundError as exc:
        raise DataError(f"{name}: no such file") from exc
    except IsADirectoryError as exc:
        raise DataError(f"{name}: is a directory, not a file") from exc
    except OSError as exc:
        raise DataError(f"{name}: cannot read ({exc.strerror or first_line(exc)})") from exc


def read_text(source: bytes | PathLike, name: str | None = None) -> DecodedText:
    """A text from bytes (an upload) or a file path, decoded as ``decode_text`` does. ``name`` is what
    error messages call it (default: the path, or "input" for bytes). A ``str`` is a path, never the text."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_text(bytes(source), name or "input")
    name = name or str(source)
    with _open(source, name) as handle:
        return decode_text(handle.read(), name)


# ----------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit RGB: transparency composited on white (a plain ``convert("RGB")`` would
    show what the transparent pixels happen to hold, often black), 16-bit and float images rescaled."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode.startswith("I;16"):
        array = np.asarray(image, dtype=np.float32) / 257.0
        return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "L").convert("RGB")
    if image.mode in ("I", "F"):
        array = np.asarray(image, dtype=np.float64)
        finite = array[np.isfinite(array)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        scaled = (np.nan_to_num(array, nan=low) - low) / max(high - low, 1e-12) * 255.0
        return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), "L").convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def _upright_rgb(image: Image.Image, max_side: int | None) -> Image.Image:
    """EXIF rotation applied (phones store portraits sideways with an orientation tag), RGB, and no side
    longer than ``max_side``."""
    image = to_rgb(ImageOps.exif_transpose(image) or image)
    if max_side and max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side), Image.LANCZOS)
    return image


def _decode_image(handle: BinaryIO, name: str, max_pixels: int | None, max_side: int | None) -> Image.Image:
    try:
        with Image.open(handle) as opened:
            width, height = opened.size
            if width < 1 or height < 1:
                raise DataError(f"{name}: the image has no pixels ({width}x{height})")
            if max_pixels and width * height > max_pixels:
                raise DataError(f"{name}: the image is {width:,}x{height:,} pixels ({width * height / 1e6:.0f} "
                                f"megapixels); at most {max_pixels / 1e6:.0f} megapixels are read: downscale it first")
            if opened.format == "JPEG" and max_side:
                opened.draft("RGB", (max_side, max_side))  # decode big JPEGs at a reduced scale
            opened.load()
            return _upright_rgb(opened, max_side)
    except DataError:
        raise
    except Image.DecompressionBombError as exc:
        raise DataError(f"{name}: the image is too large to open safely ({first_line(exc)})") from exc
    except Exception as exc:  # PIL raises many types (OSError, SyntaxError, struct.error...) for bad files
        kind = ("not an image file (or not in a format Pillow reads, such as PNG, JPEG, WebP or BMP)"
                if "cannot identify" in str(exc) else f"a corrupt or truncated image ({first_line(exc)})")
        raise DataError(f"{name}: {kind}") from exc


def read_image(source: bytes | PathLike | Image.Image, name: str | None = None, *,
               max_pixels: int | None = MAX_IMAGE_PIXELS, max_side: int | None = MAX_IMAGE_SIDE) -> Image.Image:
    """An image from bytes (an upload), a file path or a PIL image, as the RGB image every model input
    starts from: EXIF rotation applied, transparency on white (``to_rgb``), images of more than
    ``max_pixels`` refused before they are decoded, shrunk to ``max_side``. ``name`` is what error messages
    call it (default: the path, or "input"). One clear ``DataError`` for a missing, empty, corrupt or
    non-image file."""
    if isinstance(source, Image.Image):
        return _upright_rgb(source, max_side)
    if isinstance(source, (bytes, bytearray, memoryview)):
        name = name or "input"
        if not source:
            raise DataError(f"{name}: the file is empty")
        return _decode_image(io.BytesIO(bytes(source)), name, max_pixels, max_side)
    name = name or str(source)
    with _open(source, name) as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            raise DataError(f"{name}: the file is empty")
        return _decode_image(handle, name, max_pixels, max_side)
