"""Whether a refactoring changed what training writes: a dozen tiny trainings, every checkpoint file hashed.

The runs cover each path from the options to the saved checkpoint: CLS, RE and REKD of a text and a vision
model, RE over a ratio range, drop masking, ``--freeze-layers`` with the frozen-block cache (RE, REKD and CLS),
an MLM pretraining and the RE run started from it (``--init-from``), an RE run compared with a teacher, bf16
autocast, and a REKD run on the non-default loss options (alpha schedule, top-k teacher rationale, complement
adversary, per-example cost over the real length, float16 weights). Each trains the tiny presets (bert-1x32,
vit-1x32) for one or two epochs on the offline planted tasks of ``rekd_core/synthetic.py``, on one CPU thread,
with paths relative to the work directory (so that config.json does not depend on where it ran).

Hashed: every file of each checkpoint directory (``config.json``, ``model.safetensors``, ``tokenizer/``,
``metrics.json``, ``log.jsonl``). The JSON files are hashed with their wall-clock fields left out (how long a run
or an epoch took, samples per second, the hardware line), which differ between two runs of the same code by
nature; every other field, and every weight, must be bit for bit the same.

    python scripts/equivalence_check.py --write scripts/equivalence_reference.json   # on the reference commit
    python scripts/equivalence_check.py --check scripts/equivalence_reference.json   # after a change

(about 20 s on one CPU thread; exit status 1 when a hash differs, naming the run and the file).
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from rekd_core.config import TrainConfig  # noqa: E402
from rekd_core.synthetic import write_image_task, write_text_task  # noqa: E402
from rekd_core.training import train  # noqa: E402

# the fields of metrics.json and log.jsonl rows that measure time or name the machine
WALL_CLOCK_FIELDS = frozenset({"wall_time_s", "train_wall_s", "train_seconds", "train_samples_per_s", "hardware"})
TEXT = dict(task="text", dataset="csv:data/text", backbone="bert-1x32", max_length=32, tokenizer="data/tokenizer")
VISION = dict(task="vision", dataset="imagefolder:data/image", backbone="vit-1x32", image_size=16, patch_size=4)
# name -> options; a run may name an earlier one (as teacher or init_from)
RUNS: dict[str, dict] = {
    "text-cls": dict(TEXT, mode="cls"),
    "text-re": dict(TEXT, mode="re", epochs=2),
    "text-rekd": dict(TEXT, mode="rekd", teacher="runs/text-re"),
    "vision-cls": dict(VISION, mode="cls"),
    "vision-re": dict(VISION, mode="re", epochs=2),
    "vision-rekd": dict(VISION, mode="rekd", teacher="runs/vision-re"),
    "text-re-range": dict(TEXT, mode="re", ratio=0.1, ratio_range=[0.05, 0.3]),
    "vision-re-drop": dict(VISION, mode="re", masking="drop", train_selection="gumbel_topk"),
    "text-re-frozen": dict(TEXT, mode="re", freeze_layers=1, epochs=2),
    "vision-rekd-frozen-drop": dict(VISION, mode="rekd", teacher="runs/vision-re", freeze_layers=1,
                                    freeze_parts="generator", masking="drop", augment="flip"),
    "text-mlm": dict(TEXT, mode="mlm", epochs=2),
    "text-re-init": dict(TEXT, mode="re", init_from="runs/text-mlm", lr_schedule="cosine", head_lr=1e-3),
    "text-re-compared": dict(TEXT, mode="re", teacher="runs/text-re", special_tokens="select"),
    "vision-cls-frozen": dict(VISION, mode="cls", freeze_layers=1, augment="none", precision="bf16"),
    "text-rekd-options": dict(TEXT, mode="rekd", teacher="runs/text-re", alpha="schedule", teacher_rationale="topk",
                              complement_weight=0.5, sel_length="real", sel_cost="example", tau_every=3,
                              weights_dtype="float16", teacher_mask="teacher", distil="both"),
}
COMMON = dict(batch_size=16, epochs=1, device="cpu", progress=False, seed=2026)


def write_word_tokenizer(data: Path, directory: Path) -> Path:
    """A BERT tokenizer whose vocabulary is every word of the training texts, sorted: a trained WordPiece
    vocabulary differs from process to process (huggingface/tokenizers#1794), and with it every weight."""
    from tokenizers import BertWordPieceTokenizer
    from tokenizers.models import WordPiece
    from transformers import BertTokenizerFast

    with open(data / "train.csv", newline="") as fh:
        words = sorted({w for row in csv.DictReader(fh) for w in row["text"].lower().split()})
    vocab = {token: i for i, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece._tokenizer.model = WordPiece(vocab, unk_token="[UNK]")
    BertTokenizerFast(tokenizer_object=wordpiece._tokenizer, do_lower_case=True).save_pretrained(directory)
    return directory


def file_digest(path: Path) -> str:
    """The sha256 of a file; of a JSON (or JSON lines) file, of its content less the wall-clock fields."""
    if path.suffix not in (".json", ".jsonl") or path.parent.name == "tokenizer":
        return hashlib.sha256(path.read_bytes()).hexdigest()
    text = path.read_text()
    rows = [json.loads(text)] if path.suffix == ".json" else [json.loads(line) for line in text.splitlines() if line]
    kept = [_without_wall_clock(row) for row in rows]
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()


def _without_wall_clock(value):
    if isinstance(value, dict):
        return {k: _without_wall_clock(v) for k, v in value.items() if k not in WALL_CLOCK_FIELDS}
    if isinstance(value, list):
        return [_without_wall_clock(v) for v in value]
    return value


def run_all(work: Path) -> dict[str, dict[str, str]]:
    """Train every run of RUNS in ``work`` (made the working directory); the digest of each checkpoint file."""
    os.chdir(work)
    torch.set_num_threads(1)
    write_text_task("data/text", n_train=200, n_test=40, length=20)
    write_image_task("data/image", n_train=80, n_test=20, size=16, patch=4)
    write_word_tokenizer(Path("data/text"), Path("data/tokenizer"))
    digests = {}
    for name, options in RUNS.items():
        out = train(TrainConfig(out=f"runs/{name}", **{**COMMON, **options}))
        digests[name] = {str(p.relative_to(out)): file_digest(p) for p in sorted(out.rglob("*")) if p.is_file()}
        print(f"{name}: {len(digests[name])} files", flush=True)
    return digests


def compare(reference: dict, digests: dict) -> list[str]:
    """One line per run and file whose digest differs from the reference's, or that only one side has."""
    lines = []
    for name in sorted(set(reference) | set(digests)):
        ours, theirs = digests.get(name, {}), reference.get(name, {})
        for file in sorted(set(ours) | set(theirs)):
            if ours.get(file) != theirs.get(file):
                lines.append(f"{name}/{file}: {theirs.get(file, 'absent')} -> {ours.get(file, 'absent')}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", metavar="JSON", help="write the digests of this commit's runs to JSON")
    action.add_argument("--check", metavar="JSON", help="compare this commit's runs with the digests in JSON")
    parser.add_argument("--work", help="where the data and runs go (default: a temporary directory, removed)")
    args = parser.parse_args()
    target = Path(args.write or args.check).resolve()
    with tempfile.TemporaryDirectory(prefix="rekd-equivalence-") as tmp:
        work = Path(args.work or tmp).resolve()
        work.mkdir(parents=True, exist_ok=True)
        digests = run_all(work)
    if args.write:
        target.write_text(json.dumps(digests, indent=2, sort_keys=True) + "\n")
        print(f"{sum(map(len, digests.values()))} digests of {len(digests)} runs -> {target}")
        return 0
    differences = compare(json.loads(target.read_text()), digests)
    for line in differences:
        print(f"differs: {line}")
    print(f"{len(digests)} runs: " + ("identical" if not differences else f"{len(differences)} files differ"))
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
