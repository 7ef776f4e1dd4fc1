"""Images with a model's rationale over them: the image it read with its patch grid (selected patches outlined,
the others dimmed, or each patch shaded by its selection probability), its cells mapped back onto the original
image, the agreement of two models' patches, and thumbnails."""
from __future__ import annotations

import base64
import io
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw

from dashboard.render.style import BOTH, STUDENT, TEACHER, rgb


def display_image(image: Image.Image, size: int = 256) -> Image.Image:
    """``image`` fitted into a ``size`` square: small images are enlarged with sharp pixels."""
    width, height = image.size
    scale = size / max(width, height)
    if scale >= 1:
        factor = max(1, int(scale))
        return image.resize((width * factor, height * factor), Image.NEAREST)
    copy = image.copy()
    copy.thumbnail((size, size), Image.LANCZOS)
    return copy


def _grid_canvas(view: Image.Image, grid_side: int, size: int) -> tuple[np.ndarray, int]:
    cell = max(1, size // grid_side)
    side = cell * grid_side
    method = Image.NEAREST if side >= view.width else Image.LANCZOS
    return np.asarray(view.convert("RGB").resize((side, side), method), dtype=np.float32), cell


def _dimmed(pixels: np.ndarray, dim: float) -> np.ndarray:
    """The unselected look: darkened, lifted a little off black so that dark images keep their shapes."""
    return pixels * dim + 255 * 0.06


def _cell_mask(cells: Iterable[int], grid_side: int, cell: int) -> np.ndarray:
    grid = np.zeros(grid_side * grid_side, dtype=bool)
    grid[[int(i) for i in cells if 0 <= int(i) < grid_side * grid_side]] = True
    return np.kron(grid.reshape(grid_side, grid_side), np.ones((cell, cell), dtype=bool))


def _draw_grid(image: Image.Image, grid_side: int, cell: int, outlines: dict[int, str]) -> Image.Image:
    draw = ImageDraw.Draw(image, "RGBA")
    side = grid_side * cell
    for k in range(1, grid_side):
        draw.line([(k * cell, 0), (k * cell, side)], fill=(255, 255, 255, 90), width=1)
        draw.line([(0, k * cell), (side, k * cell)], fill=(255, 255, 255, 90), width=1)
    width = 2 if cell >= 8 else 1
    for index, colour in outlines.items():
        r, c = divmod(int(index), grid_side)
        draw.rectangle([c * cell, r * cell, (c + 1) * cell - 1, (r + 1) * cell - 1], outline=rgb(colour), width=width)
    return image


def _shaded(pixels: np.ndarray, weight: np.ndarray, colour: str, dim: float) -> np.ndarray:
    """Pixels shaded by a selection probability per pixel (``weight``, 0 to 1): dimmed where it is low, and tinted
    with ``colour`` in proportion to it, so that likelier patches stand out brighter and more coloured."""
    weight = weight[..., None]
    lit = pixels * (dim + (1 - dim) * weight) + 255 * 0.06 * (1 - weight)
    alpha = 0.4 * weight
    return lit * (1 - alpha) + np.array(rgb(colour), dtype=np.float32) * alpha


def patch_overlay(view: Image.Image, selected: Iterable[int], grid_side: int, colour: str = TEACHER,
                  size: int = 256, dim: float = 0.28, probabilities: Sequence[float] | None = None) -> Image.Image:
    """The image as the model sees it, enlarged to about ``size``, the patch grid drawn and the selected patches
    outlined in ``colour``; the others dimmed, or, with ``probabilities`` (one per patch), every patch shaded by
    its selection probability."""
    pixels, cell = _grid_canvas(view, grid_side, size)
    selected = [int(i) for i in selected]
    if probabilities is not None:
        grid = np.zeros(grid_side * grid_side, dtype=np.float32)
        grid[:len(probabilities)] = np.asarray(probabilities, dtype=np.float32)[:grid.size]
        out = _shaded(pixels, np.kron(grid.reshape(grid_side, grid_side), np.ones((cell, cell), np.float32)),
                      colour, dim)
    else:
        keep = _cell_mask(selected, grid_side, cell)[..., None]
        out = np.where(keep, pixels, _dimmed(pixels, dim))
    image = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    return _draw_grid(image, grid_side, cell, {i: colour for i in selected})


def original_overlay(image: Image.Image, boxes: Sequence[Sequence[float]], selected: Iterable[int],
                     colour: str = TEACHER, size: int = 256, dim: float = 0.28,
                     probabilities: Sequence[float] | None = None) -> Image.Image:
    """The original image as ``display_image`` shows it, with the model's cells mapped back onto it (``boxes``:
    each cell's (left, top, right, bottom) in the original's pixels, ``inputs.cell_boxes``): the cells drawn, the
    selected ones outlined in ``colour``; outside them dimmed, or, with ``probabilities``, each cell shaded by its
    selection probability."""
    shown = display_image(image, size).convert("RGB")
    scale = shown.width / image.width
    scaled = [tuple(round(v * scale) for v in box) for box in boxes]
    selected = [int(i) for i in selected if 0 <= int(i) < len(scaled)]
    pixels = np.asarray(shown, dtype=np.float32)
    if probabilities is not None:
        weight = np.zeros(pixels.shape[:2], dtype=np.float32)
        for (left, top, right, bottom), probability in zip(scaled, probabilities):
            weight[top:bottom, left:right] = probability
        out = _shaded(pixels, weight, colour, dim)
    else:
        keep = np.zeros((shown.height, shown.width, 1), dtype=bool)
        for left, top, right, bottom in (scaled[i] for i in selected):
            keep[top:bottom, left:right] = True
        out = np.where(keep, pixels, _dimmed(pixels, dim))
    out = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out, "RGBA")
    for left, top, right, bottom in scaled:
        if right > left and bottom > top:
            draw.rectangle([left, top, right - 1, bottom - 1], outline=(255, 255, 255, 90), width=1)
    for i in selected:
        left, top, right, bottom = scaled[i]
        if right > left and bottom > top:
            draw.rectangle([left, top, right - 1, bottom - 1], outline=rgb(colour), width=2)
    return out


def agreement_overlay(view: Image.Image, comparison: dict, grid_side: int, size: int = 256,
                      dim: float = 0.28, alpha: float = 0.45) -> Image.Image:
    """Patches selected by both (green), only the teacher (blue), only the student (orange) tinted
    and outlined; the rest dimmed."""
    pixels, cell = _grid_canvas(view, grid_side, size)
    out = _dimmed(pixels, dim)
    outlines = {}
    for key, colour in (("teacher_only", TEACHER), ("student_only", STUDENT), ("both", BOTH)):
        mask = _cell_mask(comparison[key], grid_side, cell)[..., None]
        tinted = pixels * (1 - alpha) + np.array(rgb(colour), dtype=np.float32) * alpha
        out = np.where(mask, tinted, out)
        outlines.update({int(i): colour for i in comparison[key]})
    image = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    return _draw_grid(image, grid_side, cell, outlines)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def data_uri(image: Image.Image) -> str:
    """The image as a ``data:`` URI of a PNG, for HTML pages and table cells."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def thumbnail_uri(image: Image.Image, size: int = 56) -> str:
    """A small copy of ``image`` (its longer side ``size`` pixels) as a ``data:`` URI: a table's image cell."""
    return data_uri(display_image(image.convert("RGB"), size))
