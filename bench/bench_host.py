"""How fast is this host, against the wall times recorded in a results file?

The wall times in checkpoints/results.csv were measured over many sessions, and the hosts behind
them differed in speed (one epoch of the same run took 97 s on one and 135 s on another, both on one
thread). A trio's time against the two-hour budget only means something beside the speed of the
host it ran on. This trains the first epochs of one recipe run again, into a temporary directory,
and sets its training seconds per epoch beside those in the recorded run's log.

    python bench/bench_host.py                                   # vision/variants/student-cls-pconv, 1 epoch
    python bench/bench_host.py --run text/student-cls --epochs 1 --threads 2

The default run is small (about 2.5 minutes on one thread of the 2-core CPU, all told; its test pass
is cut to 1,000 images, as it is not timed).
Only the training seconds are compared: evaluation and start-up are left out.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from rekd_core.checkpoint import LOG_FILE, read_log  # noqa: E402
from rekd_core.config import load_config_file  # noqa: E402
from rekd_core.sweep import expand_runs, recipe_outputs, train_config, with_chosen_teacher  # noqa: E402
from rekd_core.training import train  # noqa: E402


def epoch_seconds(checkpoint: Path, epochs: int) -> list[float]:
    """The training seconds of the first ``epochs`` epochs in a checkpoint's training log."""
    return [row["train_seconds"] for row in read_log(checkpoint)[:epochs]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="configs/embedded.yaml")
    parser.add_argument("--run", default="vision/variants/student-cls-pconv",
                        help="a run of the recipe, already trained")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recipe = load_config_file(args.recipe, known=None)
    roots, _ = recipe_outputs(recipe)
    run = next((r for r in expand_runs(recipe) if r["name"] == args.run), None)
    if run is None:
        sys.exit(f"{args.recipe} has no run named {args.run!r}")
    recorded = roots.out(run)
    log = recorded / LOG_FILE
    if not log.is_file():
        sys.exit(f"{log}: no training log to compare with (train {args.run} first, or name a shipped run)")
    before = epoch_seconds(recorded, args.epochs)
    if len(before) < args.epochs:
        sys.exit(f"{log}: the recorded run has {len(before)} epoch(s), fewer than --epochs {args.epochs}")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = train_config(with_chosen_teacher(run, roots), roots)
        # a small test subset: the test pass is not timed, and need not take the run's full minute
        cfg = dataclasses.replace(cfg, epochs=args.epochs, out=str(Path(tmp) / "run"), progress=False,
                                  eval_limit=1000)
        train(cfg)
        now = epoch_seconds(Path(cfg.out), args.epochs)
    print(f"{args.run}, first {args.epochs} epoch(s), {args.threads} thread(s), torch {torch.__version__}")
    print(f"training seconds per epoch: recorded {', '.join(f'{s:.1f}' for s in before)}; "
          f"this host {', '.join(f'{s:.1f}' for s in now)}")
    print(f"this host takes {sum(now) / sum(before):.2f}x the recorded time")


if __name__ == "__main__":
    main()
