"""Shared fixtures of the rekd_core tests, registered as a plugin by each test module that uses them
(``pytest_plugins = ["tests.core_fixtures"]``): tiny synthetic datasets written once per session, and tiny
trained checkpoints shared between test modules (each trains for one epoch on a few hundred examples)."""
from __future__ import annotations

import atexit
import csv
import io
import json
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image

# Everything here is offline and tiny; keep the tests off any GPU and off the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# converted pretrained weights (rekd_core.vision_weights: 88 MB for DINOv2-S) go to a cache of this session's,
# not the user's, removed when the session ends
if "REKD_CACHE" not in os.environ:
    os.environ["REKD_CACHE"] = tempfile.mkdtemp(prefix="rekd-test-cache-")
    atexit.register(shutil.rmtree, os.environ["REKD_CACHE"], ignore_errors=True)
# One intra-op thread: these models are tiny, and on a shared 2-core machine two OpenMP threads per
# process make training 3-5x SLOWER as soon as other processes compete for the cores (measured:
# the text learning test took 43 s with 1 thread and 204 s with 2 under the same load).
# REKD_TEST_THREADS overrides it; subprocesses inherit OMP_NUM_THREADS.
TEST_THREADS = int(os.environ.get("REKD_TEST_THREADS", "1"))
os.environ.setdefault("OMP_NUM_THREADS", str(TEST_THREADS))
torch.set_num_threads(TEST_THREADS)

TEXT_MAX_LENGTH = 32  # 20 words + [CLS] + [SEP] = 22 word pieces, padded to 32
IMAGE_SIZE, PATCH_SIZE = 16, 4  # a 4 x 4 grid of 16 patches


def tiny_train(dataset: str, out: Path, task: str = "text", **options) -> Path:
    """Train a tiny model in-process (one epoch unless told otherwise) and return its checkpoint."""
    from rekd_core.config import TrainConfig
    from rekd_core.training import train

    defaults = dict(mode="re", epochs=1, batch_size=16, device="cpu", progress=False, seed=2026)
    if task == "text":
        defaults.update(backbone="bert-1x32", max_length=TEXT_MAX_LENGTH)
    else:
        defaults.update(backbone="vit-1x32", image_size=IMAGE_SIZE, patch_size=PATCH_SIZE)
    return train(TrainConfig(task=task, dataset=dataset, out=str(out), **{**defaults, **options}))


def write_three_class_csv(directory: Path, n_train: int = 60, n_test: int = 15) -> Path:
    """A text csv task with the labels a, b and c."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", n_train), ("test", n_test)):
        with open(directory / f"{name}.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "label"])
            for i in range(n):
                label = "abc"[i % 3]
                writer.writerow([f"word{label} filler{i % 7} filler{i % 5} other words here", label])
    return directory


def write_eraser(root: Path) -> Path:
    """A two-review ERASER movies layout (docs one sentence per line; evidence over text.split())."""
    docs = root / "docs"
    docs.mkdir(parents=True)
    (docs / "negR_000.txt").write_text("this film is bad .\nreally , truly awful .\n", encoding="utf-8")
    (docs / "posR_000.txt").write_text("a great movie !\n", encoding="utf-8")
    (docs / "posR_001.txt").write_text("fine fun .\n", encoding="utf-8")

    def evidence(docid: str, start: int, end: int) -> dict:
        return {"docid": docid, "start_token": start, "end_token": end, "start_sentence": -1, "end_sentence": -1,
                "text": "..."}

    train = [
        # Two groups whose spans overlap and touch: merged into (3, 8); (3, 3) is empty and dropped.
        {"annotation_id": "negR_000.txt", "classification": "NEG", "docids": None,
         "evidences": [[evidence("negR_000.txt", 3, 4), evidence("negR_000.txt", 3, 3)],
                       [evidence("negR_000.txt", 6, 8), evidence("negR_000.txt", 4, 6)]]},
        {"annotation_id": "posR_000.txt", "classification": "POS", "docids": ["posR_000.txt"],
         "evidences": [[evidence("posR_000.txt", 1, 2)]]},
    ]
    val = [{"annotation_id": "posR_001.txt", "classification": "POS", "evidences": []}]
    test = [{"annotation_id": "posR_000.txt", "classification": "POS", "evidences": [[evidence("posR_000.txt", 0, 4)]]}]
    for name, rows in (("train", train), ("val", val), ("test", test)):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def trainer():
    """``tiny_train`` for test modules (importing it from here would defeat pytest's assert rewriting)."""
    return tiny_train


@pytest.fixture(scope="session")
def text_task(tmp_path_factory) -> Path:
    """The planted-token text task, small: 200 train / 40 test reviews of 20 words (csv layout)."""
    from rekd_core.synthetic import write_text_task

    return write_text_task(tmp_path_factory.mktemp("data") / "text", n_train=200, n_test=40, length=20)


@pytest.fixture(scope="session")
def image_task(tmp_path_factory) -> Path:
    """The planted-patch image task, small: 80 train / 20 test 16x16 images (imagefolder layout)."""
    from rekd_core.synthetic import write_image_task

    return write_image_task(tmp_path_factory.mktemp("data") / "image", n_train=80, n_test=20, size=IMAGE_SIZE,
                            patch=PATCH_SIZE)


@pytest.fixture(scope="session")
def three_class_task(tmp_path_factory) -> Path:
    return write_three_class_csv(tmp_path_factory.mktemp("data") / "three")


@pytest.fixture(scope="session")
def text_re_ckpt(text_task, tmp_path_factory) -> Path:
    """A tiny RE text model (bert-1x32, one epoch). Treat as read-only: copy it before changing it."""
    return tiny_train(f"csv:{text_task}", tmp_path_factory.mktemp("ckpt") / "text-re")


@pytest.fixture(scope="session")
def text_rekd_ckpt(text_task, text_re_ckpt, tmp_path_factory) -> Path:
    """A tiny REKD student distilled from ``text_re_ckpt`` (self-distillation, one epoch)."""
    return tiny_train(f"csv:{text_task}", tmp_path_factory.mktemp("ckpt") / "text-rekd", mode="rekd",
                      teacher=str(text_re_ckpt))


@pytest.fixture(scope="session")
def vision_re_ckpt(image_task, tmp_path_factory) -> Path:
    """A tiny RE vision model (vit-1x32 on 16x16 images, 4x4 patches, one epoch)."""
    return tiny_train(f"imagefolder:{image_task}", tmp_path_factory.mktemp("ckpt") / "vision-re", task="vision")


@pytest.fixture(scope="session")
def text_cls_ckpt(text_task, tmp_path_factory) -> Path:
    """A tiny CLS text baseline (no generator)."""
    return tiny_train(f"csv:{text_task}", tmp_path_factory.mktemp("ckpt") / "text-cls", mode="cls")


def image_bytes(image: Image.Image, fmt: str, **options) -> bytes:
    """``image`` encoded as a file of format ``fmt`` (an upload's bytes)."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb stand-in)."""
    data = bytearray(image_bytes(Image.new("L", (1, 1)), "PNG"))
    struct.pack_into(">II", data, 16, width, height)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.fixture(scope="session")
def hf_bert_dir(text_task, tmp_path_factory):
    """A tiny BERT and its tokenizer saved with save_pretrained, like a downloaded hub model."""
    from transformers import BertConfig, BertModel

    from rekd_core.data import load_dataset_spec
    from rekd_core.processing import train_wordpiece_tokenizer

    bundle = load_dataset_spec(f"csv:{text_task}")
    tokenizer = train_wordpiece_tokenizer(bundle.train.inputs, vocab_size=300)
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=64, max_position_embeddings=64), add_pooling_layer=False)
    path = tmp_path_factory.mktemp("hub") / "tiny-bert"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def hf_vit_dir(tmp_path_factory):
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    model = ViTModel(ViTConfig(image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, hidden_size=32, num_hidden_layers=1,
                               num_attention_heads=2, intermediate_size=64), add_pooling_layer=False)
    path = tmp_path_factory.mktemp("hub") / "tiny-vit"
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def hf_dinov2_dir(tmp_path_factory):
    """A tiny DINOv2 whose position embeddings were trained on a 8x8 grid (32 px), twice the tests' grid."""
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    model = Dinov2Model(Dinov2Config(image_size=2 * IMAGE_SIZE, patch_size=PATCH_SIZE, hidden_size=32,
                                     num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2))
    path = tmp_path_factory.mktemp("hub") / "tiny-dinov2"
    model.save_pretrained(path)
    return path


def fake_explanation(text: str, tokens: list[str], offsets: list[tuple[int, int]], selected: list[int],
                     specials=(), scores: list[float] | None = None, truncated: bool = False, label: str = "pos"):
    """An ``Explanation`` of ``text`` made by hand (its words merged as ``explain`` merges them): every piece is
    selectable, as in a model that predates the exclusion of special tokens; ``scores`` [] makes it a CLS one."""
    from rekd_core.explain import Explanation
    from rekd_core.words import merge_word_pieces

    words, special = merge_word_pieces(text, offsets, tokens, specials)
    scores = [0.0] * len(tokens) if scores is None else scores
    return Explanation(label=label, label_index=int(label == "pos"), probs={"neg": 0.3, "pos": 0.7},
                       selected=list(selected), num_features=len(tokens), ratio=len(selected) / len(tokens),
                       scores=scores, selectable=list(range(len(tokens))), length=len(tokens), tokens=list(tokens),
                       offsets=list(offsets), truncated=truncated, words=words, special_pieces=special)
