"""Write the reference statistics of the dashboard's "unlike the training data" notes into checkpoints.

For each checkpoint: the predictive entropy of its predictions (at its own ratio, top-k) over a seeded
stratified sample of its test split, as quantiles, and for an image model the range of sizes of a sample of
its training images (``rekd_core/familiarity.py`` says what they measure). The sample is drawn from the dataset
the checkpoint records and the split seed it was trained with. The result is ``input_reference.json`` inside
the checkpoint directory; nothing else there is touched.

    python scripts/input_reference.py --limit 1000 checkpoints/vision/variants/teacher-re-dino-f8
    python scripts/input_reference.py                      # the shipped headline pairs (the defaults below)
"""
from __future__ import annotations

import argparse
import datetime
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rekd_core.checkpoint import load_checkpoint, read_config  # noqa: E402
from rekd_core.data import DEFAULT_SEED, load_dataset_spec, pick_split  # noqa: E402
from rekd_core.familiarity import build_reference, write_reference  # noqa: E402
from rekd_core.training import split_seed_of  # noqa: E402

SHIPPED = ["checkpoints/text/variants/teacher-re-minilm-more",
           "checkpoints/text/variants/student-rekd-minilm-more-s2026",
           "checkpoints/vision/variants/teacher-re-dino-f8",
           "checkpoints/vision/variants/student-rekd-dino-f8-s2026"]


def reference_for(checkpoint: Path, limit: int, train_limit: int, command: str) -> dict:
    """The reference statistics of one checkpoint, on ``limit`` test examples and ``train_limit`` training images."""
    config = read_config(checkpoint)
    spec = config.get("training", {}).get("dataset") or config["dataset"]
    seed = split_seed_of(config)
    seed = DEFAULT_SEED if seed is None else seed
    bundle = load_dataset_spec(spec)
    model = load_checkpoint(checkpoint)
    test = pick_split(bundle, "test", seed, limit)
    train = pick_split(bundle, "train", seed, train_limit) if model.task == "vision" else None
    started = time.time()

    def progress(done: int, total: int) -> None:
        print(f"\r  {done}/{total} test examples ({time.time() - started:.0f} s)", end="", flush=True)

    reference = build_reference(model, test, train, dataset=spec, seed=seed, progress=progress)
    print()
    reference["written_by"] = command
    reference["date"] = datetime.date.today().isoformat()
    return reference


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="*", default=SHIPPED, help="checkpoint directories (default: the "
                        "shipped headline teachers and students)")
    parser.add_argument("--limit", type=int, default=1000, help="test examples in the entropy sample")
    parser.add_argument("--train-limit", type=int, default=1000, help="training images whose sizes are read")
    args = parser.parse_args(argv)
    command = "python scripts/input_reference.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    for checkpoint in args.checkpoints:
        print(f"[reference] {checkpoint}", flush=True)
        reference = reference_for(Path(checkpoint), args.limit, args.train_limit, command.strip())
        path = write_reference(checkpoint, reference)
        quantile = reference["entropy"]["quantiles"]["0.95"]
        print(f"[reference] {path}: 95th percentile of the entropy {quantile:.3f} nats over "
              f"{reference['entropy']['examples']} test examples", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
