"""Tests for rekd_core.data: every spec on tiny files written in the real layouts, the offline copies
of the real datasets where present, bad inputs, and the stratified subset/split helpers."""

from __future__ import annotations

import csv
import json
import os
import pickle
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rekd_core.data import (
    DatasetBundle,
    RawSplit,
    load_dataset_spec,
    stratified_split,
    stratified_subset,
)
from rekd_core.errors import DataError
from tests.core_fixtures import write_eraser

# CI puts a copy of shared/ beside the clone; locally it is /work/shared.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def needs_shared(name: str) -> Path:
    """The path of an offline dataset copy, skipping the test when it is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"offline dataset {path} not present")
    return path


# --------------------------------------------------------------------------------------------
# Writers for tiny datasets in the real layouts
# --------------------------------------------------------------------------------------------

ACLIMDB_REVIEWS = {
    ("train", "pos"): {"0_9.txt": "A wonderful film.", "12_10.txt": "Loved it <br />a lot."},
    ("train", "neg"): {"3_1.txt": "Dull.", "5_2.txt": "Zut, c'était nul (ünïcödé)."},
    ("test", "pos"): {"7_8.txt": "Great acting."},
    ("test", "neg"): {"1_4.txt": "Too long.", "2_3.txt": "Meh."},
}


def write_aclimdb(root: Path) -> Path:
    """``root/aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt`` plus the extras that must be ignored."""
    base = root / "aclImdb"
    for (split, polarity), files in ACLIMDB_REVIEWS.items():
        folder = base / split / polarity
        folder.mkdir(parents=True)
        for name, text in files.items():
            (folder / name).write_text(text, encoding="utf-8")
    (base / "train" / "unsup").mkdir()
    (base / "train" / "unsup" / "0_0.txt").write_text("unlabelled", encoding="utf-8")
    (base / "README").write_text("readme", encoding="utf-8")
    (base / "imdb.vocab").write_text("a\nb\n", encoding="utf-8")
    return base


def write_batch(file: Path, data: np.ndarray, **labels: list[int]) -> None:
    """A CIFAR batch as torchvision downloads it: a pickled dict with bytes keys."""
    content = {b"batch_label": b"tiny", b"data": data, **{key.encode(): value for key, value in labels.items()}}
    with open(file, "wb") as handle:
        pickle.dump(content, handle)


def plane_rows(colours: list[tuple[int, int, int]]) -> np.ndarray:
    """CIFAR rows (R plane, G plane, B plane) of images that are each one flat colour."""
    return np.stack([np.repeat(np.array(c, dtype=np.uint8), 1024) for c in colours])


CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar10_pickles(root: Path) -> Path:
    """``root/cifar-10-batches-py`` with 5 train batches of 2 images and a test batch of 3."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        write_batch(folder / f"data_batch_{i}", plane_rows([(i, 0, 0), (0, i, 0)]), labels=[i - 1, i + 4])
    write_batch(folder / "test_batch", plane_rows([(10, 20, 30), (1, 2, 3), (4, 5, 6)]), labels=[9, 0, 3])
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_vis": 3072}, handle)
    return folder


def write_cifar100_pickles(root: Path) -> Path:
    """``root/cifar-100-python`` with train (4 images), test (2) and meta of 100 fine / 20 coarse names."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    write_batch(folder / "train", plane_rows([(1, 1, 1)] * 4), fine_labels=[0, 99, 50, 7], coarse_labels=[4, 19, 0, 7])
    write_batch(folder / "test", plane_rows([(2, 2, 2)] * 2), fine_labels=[3, 42], coarse_labels=[1, 2])
    meta = {
        b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
    }
    with open(folder / "meta", "wb") as handle:
        pickle.dump(meta, handle)
    return folder


def write_images(folder: Path, count: int, mode: str = "RGB", size: tuple[int, int] = (8, 6)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new(mode, size).save(folder / f"{i:04d}.png")


def write_image_folder(root: Path, classes: list[str], per_class: int = 2, dev: str | None = None) -> Path:
    for split in ["train", "test"] + ([dev] if dev else []):
        for name in classes:
            write_images(root / split / name, per_class, mode="L")
    return root


def write_table(root: Path, extension: str, splits: dict[str, list[dict]]) -> Path:
    """``root/<split>.csv`` or ``root/<split>.jsonl`` with the given rows."""
    root.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        file = root / f"{split}.{extension}"
        if extension == "csv":
            with open(file, "w", encoding="utf-8", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        else:
            file.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return root


# --------------------------------------------------------------------------------------------
# Spec parsing
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["nope", "mnist:/tmp", "", "csv"])
def test_unknown_or_incomplete_spec_is_a_data_error(spec):
    with pytest.raises(DataError) as info:
        load_dataset_spec(spec)
    assert "\n" not in str(info.value)


def test_unknown_spec_lists_the_valid_ones():
    with pytest.raises(DataError, match=r"unknown dataset spec 'nope'.*aclimdb:PATH.*eraser-movies:DIR"):
        load_dataset_spec("nope")


@pytest.mark.parametrize("prefix", ["aclimdb", "cifar10", "cifar100", "imagefolder", "csv", "jsonl", "eraser-movies"])
def test_missing_path_is_named(tmp_path, prefix):
    missing = tmp_path / "does-not-exist"
    with pytest.raises(DataError, match="does-not-exist"):
        load_dataset_spec(f"{prefix}:{missing}")


def test_path_rules(tmp_path):
    with pytest.raises(DataError, match="takes no path"):
        load_dataset_spec(f"imdb:{tmp_path}")
    with pytest.raises(DataError, match="needs a path"):
        load_dataset_spec("aclimdb")
    with pytest.raises(DataError, match="empty path"):
        load_dataset_spec("csv:")


# --------------------------------------------------------------------------------------------
# Hugging Face hub specs (the hub is replaced by in-memory datasets: no network here)
# --------------------------------------------------------------------------------------------


def fake_hub(monkeypatch, tables: dict):
    import datasets

    def load_dataset(name, *args, **kwargs):
        return tables[name]()

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)


def test_imdb_hub(monkeypatch):
    import datasets

    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    fake_hub(monkeypatch, {"imdb": lambda: datasets.DatasetDict({
        split: datasets.Dataset.from_dict({"text": ["bad", "good", "ok"], "label": [0, 1, 1]}, features=features)
        for split in ("train", "test", "unsupervised")
    })})
    bundle = load_dataset_spec("imdb")
    assert (bundle.task, bundle.labels, bundle.name) == ("text", ["neg", "pos"], "imdb")
    assert list(bundle.train.inputs) == ["bad", "good", "ok"] and bundle.test.targets == [0, 1, 1]
    assert bundle.dev is None


@pytest.mark.parametrize(("spec", "names", "targets"), [
    ("cifar100", [f"c{i}" for i in range(20)], [19, 3]),
    ("cifar100-fine", [f"f{i}" for i in range(100)], [99, 42]),
])
def test_cifar100_hub_picks_the_label_column(monkeypatch, spec, names, targets):
    import datasets

    features = datasets.Features({
        "img": datasets.Image(),
        "fine_label": datasets.ClassLabel(names=[f"f{i}" for i in range(100)]),
        "coarse_label": datasets.ClassLabel(names=[f"c{i}" for i in range(20)]),
    })
    images = [Image.new("L", (32, 32), 5), Image.new("RGBA", (32, 32))]
    table = {"img": images, "fine_label": [99, 42], "coarse_label": [19, 3]}
    fake_hub(monkeypatch, {"cifar100": lambda: datasets.DatasetDict({
        split: datasets.Dataset.from_dict(table, features=features) for split in ("train", "test")
    })})
    bundle = load_dataset_spec(spec)
    assert bundle.labels == names and bundle.train.targets == targets
    image = bundle.test.inputs[0]
    assert image.mode == "RGB" and image.size == (32, 32)


def test_hub_failure_is_a_data_error(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'cifar10' on the Hub (LocalEntryNotFoundError)\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"cifar10.*Couldn't reach") as info:
        load_dataset_spec("cifar10")
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------
# aclImdb
# --------------------------------------------------------------------------------------------


def expected_aclimdb_split(split: str) -> tuple[list[str], list[int]]:
    rows = sorted(
        (f"{polarity}/{name}", text, ["neg", "pos"].index(polarity))
        for (s, polarity), files in ACLIMDB_REVIEWS.items() if s == split
        for name, text in files.items()
    )
    return [text for _, text, _ in rows], [target for _, _, target in rows]


def test_aclimdb_folder_and_tarball_agree(tmp_path):
    base = write_aclimdb(tmp_path / "extracted")
    tarball = tmp_path / "aclImdb_v1.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(base, arcname="aclImdb")

    bundles = [load_dataset_spec(f"aclimdb:{p}") for p in (tmp_path / "extracted", base, tarball)]
    for bundle in bundles:
        assert (bundle.task, bundle.labels, bundle.dev) == ("text", ["neg", "pos"], None)
        for split in ("train", "test"):
            texts, targets = expected_aclimdb_split(split)
            assert list(getattr(bundle, split).inputs) == texts
            assert getattr(bundle, split).targets == targets
    assert bundles[2].name == f"aclimdb:{tarball}"


def test_aclimdb_bad_sources(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no aclImdb reviews"):
        load_dataset_spec(f"aclimdb:{tmp_path / 'empty'}")
    corrupt = tmp_path / "corrupt.tar.gz"
    corrupt.write_bytes(b"\x1f\x8b\x08\x00 this is not gzip data")
    with pytest.raises(DataError, match="corrupt.tar.gz"):
        load_dataset_spec(f"aclimdb:{corrupt}")


# --------------------------------------------------------------------------------------------
# CIFAR pickles
# --------------------------------------------------------------------------------------------


def test_cifar10_pickle_layout(tmp_path):
    folder = write_cifar10_pickles(tmp_path)
    for path in (tmp_path, folder):  # the parent of cifar-10-batches-py, or the folder itself
        bundle = load_dataset_spec(f"cifar10:{path}")
        assert (bundle.task, bundle.labels, bundle.num_labels) == ("vision", CIFAR10_NAMES, 10)
        assert len(bundle.train) == 10 and bundle.train.targets == [0, 5, 1, 6, 2, 7, 3, 8, 4, 9]
        assert bundle.test.targets == [9, 0, 3]
        image = bundle.test.inputs[0]
        assert image.mode == "RGB" and image.size == (32, 32)
        assert image.getpixel((0, 0)) == (10, 20, 30) and image.getpixel((31, 31)) == (10, 20, 30)
        assert bundle.train.inputs[-1].getpixel((5, 5)) == (0, 5, 0)


@pytest.mark.parametrize(("spec", "n_labels", "train_targets", "label"), [
    ("cifar100", 20, [4, 19, 0, 7], "coarse19"),
    ("cifar100-fine", 100, [0, 99, 50, 7], "fine99"),
])
def test_cifar100_pickle_layout_coarse_and_fine(tmp_path, spec, n_labels, train_targets, label):
    write_cifar100_pickles(tmp_path)
    bundle = load_dataset_spec(f"{spec}:{tmp_path}")
    assert bundle.num_labels == n_labels and bundle.train.targets == train_targets
    assert bundle.labels[train_targets[1]] == label
    assert bundle.test.inputs[1].getpixel((3, 3)) == (2, 2, 2)


class _RunsAShellCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("victim", ["batches.meta", "data_batch_3"])
def test_malicious_cifar_pickle_is_refused_and_not_executed(tmp_path, victim):
    folder = write_cifar10_pickles(tmp_path)
    marker = tmp_path / "pwned"
    with open(folder / victim, "wb") as handle:
        pickle.dump({b"data": _RunsAShellCommand(marker), b"labels": [0]}, handle)
    with pytest.raises(DataError, match=rf"{victim}.*refusing to load"):
        load_dataset_spec(f"cifar10:{tmp_path}")
    assert not marker.exists()


def test_corrupt_cifar_pickles(tmp_path):
    folder = write_cifar10_pickles(tmp_path)
    (folder / "test_batch").write_bytes(b"garbage")
    with pytest.raises(DataError, match="test_batch"):
        load_dataset_spec(f"cifar10:{tmp_path}")
    write_batch(folder / "test_batch", np.zeros((2, 100), np.uint8), labels=[0, 1])
    with pytest.raises(DataError, match=r"test_batch.*\(N, 3072\)"):
        load_dataset_spec(f"cifar10:{tmp_path}")
    write_batch(folder / "test_batch", plane_rows([(0, 0, 0)]), labels=[0, 1])
    with pytest.raises(DataError, match="one label per row"):
        load_dataset_spec(f"cifar10:{tmp_path}")
    (folder / "data_batch_4").unlink()
    with pytest.raises(DataError, match="data_batch_4"):
        load_dataset_spec(f"cifar10:{tmp_path}")


def test_cifar_path_of_neither_layout(tmp_path):
    with pytest.raises(DataError, match="neither cifar-100-python"):
        load_dataset_spec(f"cifar100:{tmp_path}")


def test_cifar_image_folder_layout_checks_the_class_count(tmp_path):
    write_image_folder(tmp_path, CIFAR10_NAMES, per_class=1)
    bundle = load_dataset_spec(f"cifar10:{tmp_path}")
    assert bundle.labels == CIFAR10_NAMES and len(bundle.test) == 10
    with pytest.raises(DataError, match="10 class folders, expected 20"):
        load_dataset_spec(f"cifar100:{tmp_path}")


# --------------------------------------------------------------------------------------------
# ImageFolder
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dev", [None, "dev", "val"])
def test_image_folder(tmp_path, dev):
    write_image_folder(tmp_path, ["cat", "dog"], per_class=2, dev=dev)
    bundle = load_dataset_spec(f"imagefolder:{tmp_path}")
    assert (bundle.task, bundle.labels) == ("vision", ["cat", "dog"])
    assert bundle.train.targets == [0, 0, 1, 1] and len(bundle.test) == 4
    assert (bundle.dev is None) == (dev is None)
    image = bundle.train.inputs[3]
    assert image.mode == "RGB" and image.size == (8, 6)


def test_image_folder_trains_on_the_pixels_explain_reads(tmp_path):
    """A transparent PNG in a training folder is put on white, as `rekd explain` and the dashboard do
    (a plain convert("RGB") shows what the transparent pixels hold: here black)."""
    from rekd_core.inputs import read_image

    write_image_folder(tmp_path, ["cat", "dog"], per_class=1)
    path = tmp_path / "train" / "cat" / "0000.png"
    Image.new("RGBA", (8, 6), (0, 0, 0, 0)).save(path)
    bundle = load_dataset_spec(f"imagefolder:{tmp_path}")
    image = bundle.train.inputs[0]
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert np.array_equal(np.asarray(image), np.asarray(read_image(path)))


def test_image_folder_is_lazy(tmp_path):
    write_image_folder(tmp_path, ["cat", "dog"], per_class=1)
    (tmp_path / "train" / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
    bundle = load_dataset_spec(f"imagefolder:{tmp_path}")  # nothing opened yet
    assert bundle.train.targets == [0, 1, 1]
    bundle.train.inputs[1]  # dog/0000.png
    with pytest.raises(DataError, match="broken.jpg"):
        bundle.train.inputs[2]


def test_image_folder_problems(tmp_path):
    write_image_folder(tmp_path, ["cat", "dog"], per_class=1)
    write_images(tmp_path / "test" / "bird", 1)
    with pytest.raises(DataError, match=r"bird, cat, dog.*differ"):
        load_dataset_spec(f"imagefolder:{tmp_path}")
    (tmp_path / "other" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="other"):
        load_dataset_spec(f"imagefolder:{tmp_path / 'other'}")


# --------------------------------------------------------------------------------------------
# CSV / JSON Lines
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("extension", ["csv", "jsonl"])
def test_table_with_string_labels(tmp_path, extension):
    write_table(tmp_path, extension, {
        "train": [{"text": "good, really", "label": "pos"}, {"text": "123", "label": "neg"},
                  {"text": "so-so", "label": "mixed"}],
        "test": [{"text": "bad", "label": "neg"}],
        "dev": [{"text": "fine", "label": "pos"}],
    })
    bundle = load_dataset_spec(f"{extension}:{tmp_path}")
    assert (bundle.task, bundle.labels) == ("text", ["mixed", "neg", "pos"])
    assert bundle.train.inputs == ["good, really", "123", "so-so"]  # numeric text stays text
    assert bundle.train.targets == [2, 1, 0] and bundle.test.targets == [1] and bundle.dev.targets == [2]


@pytest.mark.parametrize("extension", ["csv", "jsonl"])
def test_table_with_integer_labels_sorts_numerically(tmp_path, extension):
    write_table(tmp_path, extension, {
        "train": [{"text": "a", "label": 10}, {"text": "b", "label": 2}, {"text": "c", "label": 1}],
        "test": [{"text": "d", "label": 2}],
    })
    bundle = load_dataset_spec(f"{extension}:{tmp_path}")
    assert bundle.labels == ["1", "2", "10"] and bundle.train.targets == [2, 1, 0]
    assert bundle.test.targets == [1] and bundle.dev is None


@pytest.mark.parametrize("extension", ["csv", "jsonl"])
def test_table_problems_name_the_file(tmp_path, extension):
    def expect(splits: dict, pattern: str) -> None:
        root = write_table(tmp_path / str(len(list(tmp_path.iterdir()))), extension, splits)
        with pytest.raises(DataError, match=pattern) as info:
            load_dataset_spec(f"{extension}:{root}")
        assert "\n" not in str(info.value)

    ok = [{"text": "a", "label": "x"}]
    expect({"train": ok, "test": [{"text": "  ", "label": "x"}]}, rf"test\.{extension}: example 1: empty")
    expect({"train": [{"body": "a", "label": "x"}], "test": ok}, rf"train\.{extension}.*missing column 'text'")
    expect({"train": ok, "test": [{"text": "b", "label": "y"}]}, rf"test\.{extension}: label\(s\) y do not occur")
    expect({"train": ok, "dev": [{"text": "b", "label": "z"}], "test": ok}, rf"dev\.{extension}: label\(s\) z")
    expect({"train": ok}, rf"test\.{extension}")  # missing test file


def test_corrupt_table_files(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": "b", "lab\n', encoding="utf-8")
    (tmp_path / "test.jsonl").write_text('{"text": "a", "label": "x"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.jsonl: line 2 is not valid JSON"):
        load_dataset_spec(f"jsonl:{tmp_path}")
    (tmp_path / "train.csv").write_bytes(b"text,label\n\xff\xfe bad bytes,x\n")
    (tmp_path / "test.csv").write_text("text,label\na,x\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.csv"):
        load_dataset_spec(f"csv:{tmp_path}")
    (tmp_path / "train.csv").write_text("text,label\nonly-text\n", encoding="utf-8")  # short row
    with pytest.raises(DataError, match=r"train\.csv: example 1"):
        load_dataset_spec(f"csv:{tmp_path}")
    (tmp_path / "train.csv").write_text("", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.csv: empty file"):
        load_dataset_spec(f"csv:{tmp_path}")
    (tmp_path / "train.jsonl").write_text('{"text": "a", "label": 1.5}\n', encoding="utf-8")
    with pytest.raises(DataError, match="label must be a string or an integer"):
        load_dataset_spec(f"jsonl:{tmp_path}")


# --------------------------------------------------------------------------------------------
# ERASER movies
# --------------------------------------------------------------------------------------------


def test_eraser_movies(tmp_path):
    bundle = load_dataset_spec(f"eraser-movies:{write_eraser(tmp_path)}")
    assert (bundle.task, bundle.labels) == ("text", ["neg", "pos"])
    assert bundle.train.inputs == ["this film is bad . really , truly awful .", "a great movie !"]
    assert bundle.train.targets == [0, 1] and bundle.test.targets == [1] and bundle.dev.targets == [1]
    assert bundle.train.evidence == [[(3, 8)], [(1, 2)]]
    assert bundle.dev.evidence == [[]]
    start, end = bundle.train.evidence[0][0]
    assert bundle.train.inputs[0].split()[start:end] == ["bad", ".", "really", ",", "truly"]


def test_eraser_movies_problems(tmp_path):
    root = write_eraser(tmp_path)
    (root / "test.jsonl").write_text(json.dumps(
        {"annotation_id": "posR_000.txt", "classification": "POS", "evidences": [[
            {"docid": "posR_000.txt", "start_token": 2, "end_token": 9}]]}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"test\.jsonl.*posR_000.*\(2, 9\) is outside the 4 tokens"):
        load_dataset_spec(f"eraser-movies:{root}")
    (root / "test.jsonl").write_text(json.dumps(
        {"annotation_id": "../train.jsonl", "classification": "POS", "evidences": []}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="invalid document id"):
        load_dataset_spec(f"eraser-movies:{root}")
    (root / "test.jsonl").write_text(json.dumps(
        {"annotation_id": "posR_000.txt", "classification": "MAYBE", "evidences": []}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="POS or NEG"):
        load_dataset_spec(f"eraser-movies:{root}")
    (root / "test.jsonl").unlink()
    with pytest.raises(DataError, match=r"test\.jsonl"):
        load_dataset_spec(f"eraser-movies:{root}")


# --------------------------------------------------------------------------------------------
# The offline copies of the real datasets
# --------------------------------------------------------------------------------------------


def test_real_eraser_movies():
    bundle = load_dataset_spec(f"eraser-movies:{needs_shared('eraser_movies')}")
    assert (len(bundle.train), len(bundle.dev), len(bundle.test)) == (1600, 200, 199)
    assert all(bundle.test.evidence)
    text, spans = bundle.test.inputs[0], bundle.test.evidence[0]
    assert all(0 <= s < e <= len(text.split()) for s, e in spans)


def test_real_cifar10_image_folder():
    bundle = load_dataset_spec(f"cifar10:{needs_shared('cifar10')}")
    assert (len(bundle.train), len(bundle.test), bundle.num_labels) == (50000, 10000, 10)
    assert bundle.labels == CIFAR10_NAMES
    assert Counter(bundle.test.targets) == {label: 1000 for label in range(10)}
    image = bundle.train.inputs[12345]
    assert image.mode == "RGB" and image.size == (32, 32)


def test_real_aclimdb_tarball():
    bundle = load_dataset_spec(f"aclimdb:{needs_shared('aclImdb_v1.tar.gz')}")
    assert (len(bundle.train), len(bundle.test)) == (25000, 25000)
    assert Counter(bundle.train.targets) == {0: 12500, 1: 12500}
    assert all(isinstance(text, str) and text for text in bundle.test.inputs[:100])


# --------------------------------------------------------------------------------------------
# RawSplit / DatasetBundle
# --------------------------------------------------------------------------------------------


def test_raw_split_subset_keeps_evidence_aligned(tmp_path):
    split = RawSplit(["a", "b", "c"], [0, 1, 0], [[(0, 1)], [], [(0, 1)]])
    sub = split.subset([2, 0])
    assert (sub.inputs, sub.targets, sub.evidence) == (["c", "a"], [0, 0], [[(0, 1)], [(0, 1)]])
    assert split.subset([]).targets == [] and len(split) == 3


def test_raw_split_subset_of_lazy_images_stays_lazy(tmp_path):
    write_cifar10_pickles(tmp_path)
    test = load_dataset_spec(f"cifar10:{tmp_path}").test
    sub = test.subset([2, 0]).subset([1])
    assert not isinstance(sub.inputs, list) and sub.evidence is None
    assert len(sub) == 1 and sub.targets == [9] and sub.inputs[0].getpixel((0, 0)) == (10, 20, 30)
    assert test.inputs[-3].getpixel((0, 0)) == (10, 20, 30) and len(test.inputs[1:]) == 2
    with pytest.raises(IndexError):
        test.inputs[3]


def test_bundle_num_labels():
    split = RawSplit(["x"], [0])
    assert DatasetBundle("text", ["a", "b", "c"], split, split).num_labels == 3


# --------------------------------------------------------------------------------------------
# Stratified subsets and splits
# --------------------------------------------------------------------------------------------

TARGETS = [0] * 50 + [1] * 30 + [2] * 20


def test_stratified_split_per_class_counts():
    kept, held = stratified_split(TARGETS, 0.25, seed=0)
    assert kept == sorted(kept) and held == sorted(held)
    assert sorted(kept + held) == list(range(100))
    assert Counter(TARGETS[i] for i in held) == {0: 13, 1: 8, 2: 5}  # round half up: 12.5 -> 13, 7.5 -> 8


def test_stratified_split_is_seeded():
    assert stratified_split(TARGETS, 0.1, seed=3) == stratified_split(TARGETS, 0.1, seed=3)
    assert stratified_split(TARGETS, 0.1, seed=3) != stratified_split(TARGETS, 0.1, seed=4)


def test_stratified_split_edges():
    targets = [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2]
    kept, held = stratified_split(targets, 0.01, seed=0)
    assert Counter(targets[i] for i in held) == {0: 1, 1: 1}  # at least one of each class with >= 2 examples
    kept, held = stratified_split(targets, 0.99, seed=0)
    assert Counter(targets[i] for i in kept) == {0: 1, 1: 1}  # and both sides keep such a class
    assert stratified_split(targets, 0.0, seed=0) == (list(range(11)), [])
    assert stratified_split(targets, 1.0, seed=0) == ([], list(range(11)))
    with pytest.raises(DataError):
        stratified_split(targets, 1.5, seed=0)


def test_stratified_subset_keeps_proportions():
    subset = stratified_subset(TARGETS, 10, seed=0)
    assert subset == sorted(subset) and len(set(subset)) == 10
    assert Counter(TARGETS[i] for i in subset) == {0: 5, 1: 3, 2: 2}
    assert subset == stratified_subset(TARGETS, 10, seed=0) != stratified_subset(TARGETS, 10, seed=1)


def test_stratified_subset_largest_remainder():
    targets = [0] * 5 + [1] * 3 + [2] * 2  # n=5: shares 2.5, 1.5, 1.0 -> 2, 1, 1, and the spare one to class 0
    assert Counter(targets[i] for i in stratified_subset(targets, 5, seed=0)) == {0: 3, 1: 1, 2: 1}
    targets = [2] * 7 + [0] * 7 + [1] * 7  # n=4: 1.33 each -> 1, 1, 1 and the spare to class 0
    assert Counter(targets[i] for i in stratified_subset(targets, 4, seed=0)) == {0: 2, 1: 1, 2: 1}


def test_stratified_subset_edges():
    assert stratified_subset(TARGETS, 100, seed=0) == list(range(100))
    assert stratified_subset(TARGETS, 1000, seed=0) == list(range(100))
    assert stratified_subset(TARGETS, 0, seed=0) == []
    assert stratified_subset([], 5, seed=0) == []
