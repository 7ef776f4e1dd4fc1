"""Everything the page explains, read the way ``rekd explain`` reads it: typed reviews, ``.txt`` / ``.csv`` uploads
(any encoding), images of any format, size and colour mode, the bundled examples and dataset samples (with their
human evidence, where the dataset has some); how an image is fitted to a model's square, and where each of the
model's cells lies on the original. Every problem the user can fix is a ``RekdError`` with one line. No Streamlit.
"""
from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd
from PIL import Image, ImageOps

from rekd_core.config import DEFAULT_SEED
from rekd_core.errors import ConfigError, DataError, RekdError, first_line
from rekd_core.inputs import MAX_IMAGE_SIDE, decode_text, decoding_notice, read_image, to_rgb

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
TEXT_UPLOAD_TYPES = ("txt", "csv")
IMAGE_UPLOAD_TYPES = ("png", "jpg", "jpeg", "webp", "bmp")
MAX_REVIEW_CHARS = 50_000  # a review is cut here before tokenizing (a 256-piece model reads ~1,500)
MAX_CSV_REVIEWS = 1_000  # reviews read from one uploaded CSV file
MAX_SAMPLE = 2_000  # rows of a dataset sample (browser, live evaluation, summary)
EXIF_ORIENTATION = 0x0112
# How an image is fitted to a model's square input. "squash" is what the models' own transform does.
FIT_MODES = {"squash": "squash: resized to the square, its aspect ratio changed",
             "centre-crop": "centre-crop: the middle square kept, the rest cut",
             "pad": "pad: black borders added to make it square, nothing cut"}
TEXT_COLUMNS = ("text", "review", "content", "sentence", "body")
LABEL_COLUMNS = ("label", "sentiment", "polarity", "class")
LINE_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)  # the HTML line breaks IMDB reviews hold


@dataclass
class InputItem:
    """One thing to explain: a review (``str``) or an RGB image."""

    name: str
    kind: str  # "text" | "image"
    value: object  # str or PIL.Image.Image
    label: str | None = None  # the true label, when known
    source: str = ""
    notice: str | None = None  # e.g. "the review was cut at 50,000 characters"
    evidence: list[tuple[int, int]] | None = None  # human rationale: (start, end) spans over text.split() words
    size: tuple[int, int] | None = None  # an image's width and height as uploaded, before it was shrunk to be read

    @property
    def task(self) -> str:
        return "text" if self.kind == "text" else "vision"

    @cached_property
    def digest(self) -> str:
        """A fingerprint of the content (the review's characters, the image's pixels): what the page keys it by."""
        if self.kind == "text":
            return hashlib.sha1(self.value.encode("utf-8", "surrogatepass")).hexdigest()
        return hashlib.sha1(self.value.tobytes() + str(self.value.size).encode()).hexdigest()

    def preview(self, width: int = 90) -> str:
        if self.kind != "text":
            return f"{self.name} ({self.value.width}x{self.value.height})"
        text = " ".join(LINE_BREAK.sub(" ", str(self.value)).split())
        return text if len(text) <= width else text[: width - 1] + "…"


def prepare_review(text: str, name: str = "review", source: str = "typed", label: str | None = None) -> InputItem:
    """A review ready to explain: non-empty, cut at ``MAX_REVIEW_CHARS`` with a notice."""
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{name}: the review is empty; there is nothing to explain")
    notice = None
    if len(text) > MAX_REVIEW_CHARS:
        notice = (f"{name}: the review is {len(text):,} characters long; only its first {MAX_REVIEW_CHARS:,} "
                  "characters are used (the models read far fewer word pieces than that anyway).")
        text = text[:MAX_REVIEW_CHARS]
    return InputItem(name, "text", text, label=label, source=source, notice=notice)


def parse_text_upload(name: str, data: bytes) -> list[InputItem]:
    """A ``.txt`` file is one review; a ``.csv`` file holds one review per row in a column named
    text/review/content (or its only column), with an optional label/sentiment column. A file that is
    not UTF-8 is decoded in the encoding that fits it best, and its first item's notice names it."""
    text, encoding = decode_text(data, name)
    decoded = decoding_notice(name, encoding)
    if not name.lower().endswith(".csv"):
        item = prepare_review(text, name, source=name)
        item.notice = "; ".join(filter(None, [decoded, item.notice])) or None
        return [item]
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, on_bad_lines="error")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error, ValueError) as exc:
        raise DataError(f"{name}: not a readable CSV file ({first_line(exc)})") from exc
    columns = {str(c).strip().lower(): c for c in frame.columns}
    text_column = next((columns[c] for c in TEXT_COLUMNS if c in columns), None)
    if text_column is None:
        if len(frame.columns) != 1:
            raise DataError(f"{name}: no review column: name one of {', '.join(TEXT_COLUMNS)} "
                            f"(columns found: {', '.join(map(str, frame.columns))})")
        text_column = frame.columns[0]
    label_column = next((columns[c] for c in LABEL_COLUMNS if c in columns), None)
    items: list[InputItem] = []
    skipped = 0
    texts = frame[text_column].tolist()
    labels = frame[label_column].tolist() if label_column is not None else [""] * len(texts)
    for number, (review, label) in enumerate(zip(texts, labels), start=1):
        if not str(review).strip():
            skipped += 1
            continue
        if len(items) >= MAX_CSV_REVIEWS:
            break
        items.append(prepare_review(str(review), f"{name} row {number}", source=name, label=str(label).strip() or None))
    if not items:
        raise DataError(f"{name}: no review in the file (every row of column {text_column!r} is empty)")
    notes = []
    if len(frame) > MAX_CSV_REVIEWS:
        notes.append(f"only its first {MAX_CSV_REVIEWS:,} reviews are read")
    if skipped:
        notes.append(f"{skipped} empty row(s) skipped")
    summary = f"{name}: " + ", ".join(notes) if notes else None
    items[0].notice = "; ".join(filter(None, [decoded, items[0].notice, summary])) or None
    return items


def fit_image(image: Image.Image, size: int, mode: str = "squash") -> Image.Image:
    """``image`` as the ``size`` x ``size`` square a vision model reads (see ``FIT_MODES``). Resampled
    bilinearly, as the models' own transform (torchvision's Resize) does, so that "squash" gives them
    exactly what they were trained on; the result is also what the overlays are drawn on."""
    check_fit(mode)
    square = (int(size), int(size))
    if mode == "squash":
        return image.resize(square, Image.BILINEAR)
    if mode == "centre-crop":
        return ImageOps.fit(image, square, method=Image.BILINEAR, centering=(0.5, 0.5))
    return ImageOps.pad(image, square, method=Image.BILINEAR, color=(0, 0, 0), centering=(0.5, 0.5))


def check_fit(mode: str) -> None:
    """``ConfigError`` unless ``mode`` is one of ``FIT_MODES``."""
    if mode not in FIT_MODES:
        raise ConfigError(f"unknown image fit {mode!r}: pick one of {', '.join(FIT_MODES)}")


def cell_boxes(width: int, height: int, grid_side: int, mode: str = "squash") -> list[tuple[float, ...]]:
    """Where each cell of a model's ``grid_side`` x ``grid_side`` grid lies on the original ``width`` x ``height``
    image that ``fit_image`` fitted with ``mode``: (left, top, right, bottom) in the original's pixels, row-major,
    clipped to the image (a cell of a padded border is empty; a cropped-off strip is in no cell)."""
    check_fit(mode)
    if mode == "squash":
        cell_w, cell_h, left, top = width / grid_side, height / grid_side, 0.0, 0.0
    else:  # the square the model reads, centred on the image: cropped inside it, or padded around it
        side = min(width, height) if mode == "centre-crop" else max(width, height)
        cell_w = cell_h = side / grid_side
        left, top = (width - side) / 2, (height - side) / 2

    def clip(value: float, limit: int) -> float:
        return min(max(value, 0.0), float(limit))

    return [(clip(left + c * cell_w, width), clip(top + r * cell_h, height),
             clip(left + (c + 1) * cell_w, width), clip(top + (r + 1) * cell_h, height))
            for r in range(grid_side) for c in range(grid_side)]


def describe_fit(width: int, height: int, size: int, mode: str = "squash") -> str:
    """One line saying how a ``width`` x ``height`` image becomes the model's ``size`` square."""
    side = min(width, height)
    if width == height:
        how = "already square: resized" if (width, height) != (size, size) else "already the model's size: unchanged"
    elif mode == "squash":
        how = f"squashed (its {width}:{height} shape is distorted to 1:1)"
    elif mode == "centre-crop":
        cut, side_cut = 100 * (1 - side / max(width, height)), "width" if width > height else "height"
        how = f"centre-cropped to {side}x{side} ({cut:.0f}% of its {side_cut} cut), then resized"
    else:
        how = f"padded to {max(width, height)}x{max(width, height)} with black borders, then resized"
    return f"{width}x{height} -> {size}x{size}: {how}."


def small_image_warning(name: str, width: int, height: int, size: int) -> str | None:
    """A warning when an image is smaller than the model's ``size`` square (it is enlarged: the model sees
    blurred pixels it was not trained on); None otherwise."""
    if width >= size and height >= size:
        return None
    return (f"{name} is only {width}x{height} pixels, smaller than the {size}x{size} images the model reads: it is "
            "enlarged, so the model sees a blur of a few pixels and its explanation says little.")


def parse_image_upload(name: str, data: bytes) -> InputItem:
    """An uploaded image as an input item, read by ``rekd_core.inputs.read_image`` as ``rekd explain --image``
    reads a file: EXIF rotation applied, transparency on white, at most 40 megapixels, shrunk to 2048 pixels (a
    notice says so, with the size it had)."""
    image = read_image(data, name)
    size = _upright_size(data) or image.size
    item = InputItem(name, "image", image, source=name, size=size)
    if size != image.size:
        item.notice = (f"{name}: {size[0]}x{size[1]} pixels, shrunk to {image.width}x{image.height} when read (images "
                       f"are read at most {MAX_IMAGE_SIDE} pixels a side; the models read far fewer).")
    return item


def _upright_size(data: bytes) -> tuple[int, int] | None:
    """The size of an image file as shown upright, from its header (EXIF orientations 5 to 8 turn it a quarter)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            turned = image.getexif().get(EXIF_ORIENTATION) in (5, 6, 7, 8)
    except Exception:  # noqa: BLE001 - read_image has read it already: a header we cannot read gives no size
        return None
    return (height, width) if turned else (width, height)


def load_examples(task: str) -> list[InputItem]:
    """The bundled examples of a task (``examples/index.csv``), with their true labels."""
    items = []
    with open(EXAMPLES_DIR / "index.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["task"] != task:
                continue
            path = EXAMPLES_DIR / row["file"]
            if task == "text":
                item = prepare_review(decode_text(path.read_bytes(), row["file"])[0], row["title"], source="example",
                                      label=row["label"])
            else:
                item = InputItem(row["title"], "image", read_image(path, row["file"]),
                                 label=row["label"], source="example")
            items.append(item)
    return items


def sample_split(bundle, split_name: str, n: int, seed: int = DEFAULT_SEED):
    """A seeded stratified sample of ``n`` examples (a ``RawSplit``) of one split of a ``DatasetBundle``;
    ``dev`` is carved from train (20%, as in training) when the source ships none."""
    from rekd_core.data import pick_split

    return pick_split(bundle, split_name, seed, limit=max(1, min(int(n), MAX_SAMPLE)))


def dataset_items(bundle, split_name: str, n: int, seed: int = DEFAULT_SEED) -> list[InputItem]:
    """``sample_split`` as input items, with their true labels and, where the dataset has them (ERASER),
    their human evidence spans."""
    split = sample_split(bundle, split_name, n, seed)
    items = []
    for i in range(len(split)):
        label = bundle.labels[split.targets[i]]
        name = f"{bundle.name} {split_name} #{i + 1}"
        if bundle.task == "text":
            item = prepare_review(split.inputs[i], name, source=bundle.name, label=label)
            if split.evidence is not None:
                item.evidence = [(int(start), int(end)) for start, end in split.evidence[i]]
            items.append(item)
        else:
            items.append(InputItem(name, "image", to_rgb(split.inputs[i]), label=label, source=bundle.name))
    return items


def load_dataset(spec: str):
    """``load_dataset_spec`` with every failure as a ``DataError``."""
    from rekd_core.data import load_dataset_spec

    spec = spec.strip()
    if not spec:
        raise DataError("no dataset given: type a spec such as csv:DIR, imagefolder:DIR, aclimdb:PATH or cifar10:PATH")
    try:
        return load_dataset_spec(spec)
    except RekdError:
        raise
    except Exception as exc:
        raise DataError(f"dataset {spec!r}: cannot be read ({type(exc).__name__}: {first_line(exc)})") from exc


def download_stem(item: InputItem, prefix: str = "comparison") -> str:
    """A file name (without its extension) for a download about ``item``: its name in letters, digits and
    underscores, the middle left out past 40 characters (dataset items differ at their end, ``... test #12``),
    and a fingerprint of its content, so that no two inputs download under the same name."""
    slug = "".join(c if c.isalnum() else "_" for c in item.name).strip("_") or "input"
    if len(slug) > 40:
        slug = f"{slug[:16]}__{slug[-22:]}"
    return f"{prefix}_{slug}_{item.digest[:8]}"
