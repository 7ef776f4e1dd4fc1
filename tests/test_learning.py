"""RE must really learn: on the planted-feature tasks (rekd_core/synthetic.py) the label is decided by one
planted token or patch, so a working select-predict model reaches high test accuracy AND selects that
token or patch as its rationale. The text tests train on the defaults a user gets (about 10 s each on
one CPU thread)."""
from __future__ import annotations

import csv
import importlib.util
import json
import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from rekd_core.checkpoint import load_checkpoint, read_metrics
from rekd_core.config import TrainConfig
from rekd_core.explain import explain
from rekd_core.processing import train_wordpiece_tokenizer
from rekd_core.synthetic import write_image_task, write_text_task
from rekd_core.training import train

pytestmark = pytest.mark.slow
pytest_plugins = ["tests.core_fixtures"]
REPO = Path(__file__).resolve().parents[1]


def planted_text_task(root: Path) -> Path:
    """The planted-word task of the text-teachers issue: 4 cue words per class among 300 fillers, 40 words
    a text, 2,400 training texts."""
    return write_text_task(root, n_train=2400, n_test=300, length=40, vocab=300, cues_per_class=4)


def local_bert_directory(data: Path, directory: Path) -> Path:
    """A local Hugging Face BERT directory as a user writes one for a model of their own: config.json (1 layer,
    hidden 64) and a WordPiece tokenizer trained on the task's texts, no weights (so: from scratch)."""
    from transformers import BertConfig

    texts = [row["text"] for row in csv.DictReader(open(data / "train.csv", newline=""))]
    tokenizer = train_wordpiece_tokenizer(texts, 2000)
    tokenizer.save_pretrained(directory)
    BertConfig(vocab_size=len(tokenizer), num_hidden_layers=1, hidden_size=64, num_attention_heads=2,
               intermediate_size=256).save_pretrained(directory)
    return directory


def assert_learns_the_planted_words(out: Path, data: Path) -> None:
    """Accuracy >= 0.95, and a cue word in the top-k rationale of >= 90% of the test texts."""
    assert read_metrics(out)["test"]["accuracy"] >= 0.95
    rows = list(csv.DictReader(open(data / "test.csv", newline="")))
    explanations = explain(load_checkpoint(out), [row["text"] for row in rows])
    assert sum(e.label == row["label"] for e, row in zip(explanations, rows)) / len(rows) >= 0.95
    hits = 0
    for exp, row in zip(explanations, rows):
        assert len(exp.selected) == round(0.1 * exp.num_features)
        assert not {exp.tokens[i] for i in exp.selected} & {"[CLS]", "[SEP]"}
        start = sum(len(word) + 1 for word in row["text"].split()[:int(row["cue"])])  # the cue word's characters
        hits += any(start <= exp.offsets[i][0] < start + len(row["cue_word"]) for i in exp.selected)
    assert hits / len(rows) >= 0.90, f"a cue word is in the rationale of only {hits}/{len(rows)} texts"


def test_text_re_preset_learns_the_planted_words_on_the_defaults(tmp_path):
    """Everything at the defaults a user gets from `rekd train --mode re --backbone bert-1x32`: a trained
    WordPiece vocabulary, 3 epochs, lambda_sel 1e-4, tau every 100 steps, max length 256. Measured: test
    accuracy 1.00 in about 10 s; 0.77 with the generator's word embeddings frozen (the old default)."""
    data = planted_text_task(tmp_path / "data")
    out = train(TrainConfig(task="text", mode="re", backbone="bert-1x32", dataset=f"csv:{data}",
                            out=str(tmp_path / "ckpt"), progress=False))
    assert json.loads((out / "config.json").read_text())["generator_embeddings"] == "trained"
    assert_learns_the_planted_words(out, data)


def test_text_re_local_hf_directory_learns_the_planted_words_on_the_defaults(tmp_path):
    """A local randomly initialised HF BERT directory (config and tokenizer, no weights) on the defaults: no lr
    given, so the from-scratch rate (5e-4; the paper's 1e-5 is for pretrained weights) is the default. Measured:
    accuracy 1.00 and the cue in 97-100% of the rationales (two seeds); at lr 1e-3 the accuracy stays 1.00
    but the cue is in 73-84% of them."""
    data = planted_text_task(tmp_path / "data")
    bert = local_bert_directory(data, tmp_path / "bert")
    assert TrainConfig(task="text", backbone=str(bert), dataset="-", out="-").resolved().lr == 5e-4
    out = train(TrainConfig(task="text", mode="re", backbone=str(bert), dataset=f"csv:{data}",
                            out=str(tmp_path / "ckpt"), progress=False))
    assert json.loads((out / "config.json").read_text())["generator_embeddings"] == "trained"
    assert_learns_the_planted_words(out, data)


@pytest.mark.parametrize("backbone", ["vit-1x32", "vit-2x64-pconv"])
def test_vision_re_learns_and_selects_the_planted_patch_on_the_defaults(tmp_path, backbone):
    """Everything at the defaults of `rekd train --task vision --mode re --backbone B --image-size 16 --patch-size 4`
    (ratio 0.15: 2 of the 16 patches, 3 epochs, the preset's lr). Measured: accuracy 1.00 and the patch in
    96-100% of the rationales (vit-1x32, three seeds and lr 1e-3; vit-2x64-pconv and vit-4x128 likewise). The
    3x3 convolutional stems (vit-*-conv) fail it: see docs/GUIDE.md."""
    data = write_image_task(tmp_path / "data", n_train=1000, n_test=200, size=16, patch=4)
    out = train(TrainConfig(task="vision", mode="re", backbone=backbone, dataset=f"imagefolder:{data}",
                            image_size=16, patch_size=4, out=str(tmp_path / "ckpt"), progress=False))
    assert read_metrics(out)["test"]["accuracy"] >= 0.95

    files = sorted((data / "test").glob("*/*.png"))
    model = load_checkpoint(out)
    explanations = explain(model, [Image.open(f) for f in files])
    accuracy = sum(e.label == f.parent.name for e, f in zip(explanations, files)) / len(files)
    assert accuracy >= 0.95
    hits = 0
    for exp, file in zip(explanations, files):
        assert len(exp.selected) == round(0.15 * 16)  # 2 of the 16 patches
        hits += int(re.search(r"_cell(\d+)\.png$", file.name).group(1)) in exp.selected
    assert hits / len(files) >= 0.90, f"the planted patch is in the rationale of only {hits}/{len(files)} images"

    # scripts/selection_diagnostics.py tells the learned ranking from chance: the 2 patches ranked lowest
    # miss the planted one (chance, 0.5); a random pair, or the 2 positions selected most often (the
    # planted patch's position is random), holds it about 1 time in 8 (about 0.56).
    spec = importlib.util.spec_from_file_location("selection_diagnostics",
                                                  REPO / "scripts" / "selection_diagnostics.py")
    diagnostics = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(diagnostics)
    row = diagnostics.diagnose(model, limit=200, seed=0)
    assert row["n"] == 200 and row["topk_accuracy"] >= 0.90
    assert row["bottomk_accuracy"] <= 0.75 and row["random_mask_accuracy"] <= 0.80
    assert row["fixed_positions_accuracy"] <= 0.80


def planted_patch_hits(out: Path, data: Path) -> tuple[float, float]:
    """(test accuracy of the explanations, share of test images whose planted patch is in the rationale)."""
    files = sorted((data / "test").glob("*/*.png"))
    explanations = explain(load_checkpoint(out), [Image.open(f) for f in files])
    accuracy = sum(e.label == f.parent.name for e, f in zip(explanations, files)) / len(files)
    hits = sum(int(re.search(r"_cell(\d+)\.png$", f.name).group(1)) in e.selected for e, f in zip(explanations, files))
    return accuracy, hits / len(files)


@pytest.fixture(scope="module")
def realistic_grids(tmp_path_factory) -> dict[int, Path]:
    """The planted-patch task on realistic grids: 64 patches (32 px, 1,200 training images) and 256 patches (64 px,
    4,000 training images: a CLS model of the preset needs about 150 steps to find the patch among 256, measured
    0.50 on the dev split through epoch 4 of 1,200 images and 1.00 from epoch 5)."""
    root = tmp_path_factory.mktemp("grids")
    return {64: write_image_task(root / "64", n_train=1200, n_test=200, size=32, patch=4),
            256: write_image_task(root / "256", n_train=4000, n_test=200, size=64, patch=4)}


@pytest.mark.parametrize("seed", [2026, 1, 2])
@pytest.mark.parametrize("patches", [64, 256])
def test_drop_masking_learns_the_planted_patch_on_realistic_grids_on_the_defaults(realistic_grids, patches, seed,
                                                                                   tmp_path):
    """`rekd train --task vision --mode re --backbone vit-1x32 --masking drop --ratio 0.1` and the grid, nothing
    else (3 epochs, the paper's Gumbel sampling, crop and flip): 6 of 64 or 26 of 256 patches selected. Measured
    (docs/GUIDE.md): accuracy 0.99-1.00 with the patch in 98-100% of the rationales on these three seeds; the paper's
    zero masking stays at 0.50 on both grids with the patch ranked first (its predictor, reading the 58 or 230
    unselected patches as position embeddings, does not find the patch in time)."""
    data = realistic_grids[patches]
    size = 32 if patches == 64 else 64
    out = train(TrainConfig(task="vision", mode="re", backbone="vit-1x32", masking="drop", ratio=0.1, seed=seed,
                            dataset=f"imagefolder:{data}", image_size=size, patch_size=4, out=str(tmp_path / "ckpt"),
                            progress=False))
    assert read_metrics(out)["test"]["accuracy"] >= 0.95
    accuracy, hits = planted_patch_hits(out, data)
    assert accuracy >= 0.95 and hits >= 0.90, f"accuracy {accuracy:.3f}, planted patch in {hits:.0%} of rationales"


def test_fixed_positions_keep_each_examples_top_k_count_of_its_real_features():
    """The fixed-positions diagnostic ranks positions by the sample's selection counts, and each example
    keeps as many of its real features as top-k does: a short review is not cut to the padded k."""
    spec = importlib.util.spec_from_file_location("selection_diagnostics",
                                                  REPO / "scripts" / "selection_diagnostics.py")
    diagnostics = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(diagnostics)
    counts = torch.tensor([5.0, 0.0, 9.0, 7.0, 1.0, 8.0, 2.0, 3.0, 6.0, 4.0])
    real = torch.tensor([[True] * 10, [True] * 4 + [False] * 6])  # a full example and a short one
    mask = diagnostics.fixed_positions_mask(counts, real, ratio=0.3)
    assert mask[0].nonzero().flatten().tolist() == [2, 3, 5]  # the 3 positions selected most often
    assert mask[1].nonzero().flatten().tolist() == [2]  # round(0.3 x 4) = 1 of its 4 real features
