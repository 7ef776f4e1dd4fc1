"""Does a vision preset learn the planted-patch task on the CLI defaults?

Writes the task of rekd_core/synthetic.py (one red or blue 4x4 patch among grey noise decides the class;
1,000 training and 200 test images of 16x16), trains ``rekd train --task vision --mode re`` with only the
backbone, grid and seed given, and prints the test accuracy and how often the planted patch is in the
rationale. The linear and -pconv presets reach 1.00 and 0.96-1.00; see docs/GUIDE.md.

    python scripts/planted_check.py vit-1x32 vit-1x32-conv --seeds 2026 1
"""
from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

from PIL import Image

from rekd_core.checkpoint import load_checkpoint, read_metrics
from rekd_core.config import TrainConfig
from rekd_core.explain import explain
from rekd_core.synthetic import write_image_task
from rekd_core.training import train


def planted_check(backbone: str, seed: int, work: Path) -> dict:
    """Train one RE model on the planted-patch task; return its accuracy and planted-patch hit rate."""
    data = work / "data"
    if not (data / "test").exists():
        write_image_task(data, n_train=1000, n_test=200, size=16, patch=4)
    out = train(TrainConfig(task="vision", mode="re", backbone=backbone, dataset=f"imagefolder:{data}",
                            image_size=16, patch_size=4, seed=seed, out=str(work / f"{backbone}-{seed}"),
                            progress=False))
    files = sorted((data / "test").glob("*/*.png"))
    explanations = explain(load_checkpoint(out), [Image.open(f) for f in files])
    hits = sum(int(re.search(r"_cell(\d+)\.png$", f.name).group(1)) in e.selected
               for e, f in zip(explanations, files))
    return {"backbone": backbone, "seed": seed, "accuracy": read_metrics(out)["test"]["accuracy"],
            "patch_in_rationale": hits / len(files)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("backbones", nargs="+")
    parser.add_argument("--seeds", type=int, nargs="+", default=[2026])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        for backbone in args.backbones:
            for seed in args.seeds:
                row = planted_check(backbone, seed, Path(work))
                print(f"{row['backbone']:16s} seed {row['seed']}: accuracy {row['accuracy']:.3f}, "
                      f"planted patch in {row['patch_in_rationale']:.0%} of the rationales")


if __name__ == "__main__":
    main()
