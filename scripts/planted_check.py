"""Does a vision preset learn the planted-patch task on the CLI defaults?

Writes the task of rekd_core/synthetic.py (one red or blue patch among grey noise decides the class;
1,000 training and 200 test images, 16x16 with 4x4 patches unless told), trains ``rekd train --task vision
--mode re`` with only the backbone, grid and seed given (optionally bf16, and from a CLS model of the task
as the recipe starts its RE runs), and prints the test accuracy and how often the planted patch is in the
rationale. On realistic grids (64 and 256 patches; docs/GUIDE.md has the measurements):

    python scripts/planted_check.py vit-1x32 --image-size 32 --train-images 1200 --seeds 2026 1 2 \
        --set ratio=0.1 masking=drop
    python scripts/planted_check.py vit-1x32 --image-size 64 --train-images 4000 --seeds 2026 1 2 \
        --set ratio=0.1 masking=drop
    python scripts/planted_check.py dinov2-s --image-size 224 --patch-size 14 --train-images 1200 --precision bf16 \
        --cls-start --set ratio=0.1 masking=drop

    python scripts/planted_check.py vit-1x32 vit-1x32-conv --seeds 2026 1
    python scripts/planted_check.py efficientnet-lite0 --image-size 128 --patch-size 16 --precision bf16 --cls-start
    python scripts/planted_check.py vit-1x32-conv --seeds 2026 1 2 3 \
        --set complement_weight=1 epochs=10 train_selection=gumbel_topk
"""
from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import yaml
from PIL import Image

from rekd_core.checkpoint import load_checkpoint, read_metrics
from rekd_core.config import TrainConfig
from rekd_core.explain import explain
from rekd_core.synthetic import write_image_task
from rekd_core.training import train


def planted_check(backbone: str, seed: int, work: Path, image_size: int = 16, patch_size: int = 4,
                  precision: str = "fp32", cls_start: bool = False, train_images: int = 1000, test_images: int = 200,
                  **options) -> dict:
    """Train one RE model on the planted-patch task (from a CLS model trained on it first, with
    ``cls_start``, as the recipe starts its RE runs); return its accuracy and planted-patch hit rate.
    ``options``: further training options of the RE run (e.g. ``complement_weight``)."""
    data = work / f"data-{image_size}-{patch_size}-{train_images}-{test_images}"
    if not (data / "test").exists():
        write_image_task(data, n_train=train_images, n_test=test_images, size=image_size, patch=patch_size)
    common = dict(task="vision", backbone=backbone, dataset=f"imagefolder:{data}", image_size=image_size,
                  patch_size=patch_size, seed=seed, precision=precision, progress=False)
    init_from = None
    if cls_start:
        init_from = str(train(TrainConfig(mode="cls", out=str(work / f"{backbone}-{seed}-cls"), **common)))
    out = train(TrainConfig(mode="re", out=str(work / f"{backbone}-{seed}"), init_from=init_from, **common,
                            **options))
    files = sorted((data / "test").glob("*/*.png"))
    explanations = explain(load_checkpoint(out), [Image.open(f) for f in files])
    hits = {}  # class -> whether the planted patch is in each of its test images' rationales
    for e, f in zip(explanations, files):
        hits.setdefault(f.parent.name, []).append(int(re.search(r"_cell(\d+)\.png$", f.name).group(1)) in e.selected)
    return {"backbone": backbone, "seed": seed, "accuracy": read_metrics(out)["test"]["accuracy"],
            "patch_in_rationale": sum(map(sum, hits.values())) / len(files),
            "by_class": {label: sum(h) / len(h) for label, h in sorted(hits.items())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("backbones", nargs="+")
    parser.add_argument("--seeds", type=int, nargs="+", default=[2026])
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--patch-size", type=int, default=4)
    parser.add_argument("--train-images", type=int, default=1000, help="of which 20%% become the dev split")
    parser.add_argument("--test-images", type=int, default=200)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--cls-start", action="store_true", help="start the RE model from a CLS model of the task")
    parser.add_argument("--set", nargs="*", default=[], metavar="OPTION=VALUE",
                        help="further training options of the RE run, e.g. complement_weight=1 sel_cost=example")
    args = parser.parse_args()
    options = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)}
    with tempfile.TemporaryDirectory() as work:
        for backbone in args.backbones:
            for seed in args.seeds:
                started = time.time()
                row = planted_check(backbone, seed, Path(work), args.image_size, args.patch_size, args.precision,
                                    args.cls_start, args.train_images, args.test_images, **options)
                print(f"{row['backbone']:16s} seed {row['seed']}: accuracy {row['accuracy']:.3f}, planted patch in "
                      f"{row['patch_in_rationale']:.0%} of the rationales ("
                      + ", ".join(f"{label} {share:.0%}" for label, share in row["by_class"].items())
                      + f"; {time.time() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
