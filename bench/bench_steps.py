"""Training speed of the vision steps (DINOv2-S teacher RE, a 2-block DINOv2 student's REKD) in the project's
modes, side by side in one run: zero against drop masking, frozen blocks cached or not, fp32 against bf16, at
112 px (8x8 patches of 14 px) and 224 px (16x16).

Each loop is ``SIZE:VARIANT`` (bench_train.py's variant names: ``zero`` or ``drop``, optionally ``-fN`` frozen
blocks and ``-cache``, then ``@fp32`` or ``@bf16``), e.g. ``224:drop-f8-cache@bf16``. The loops are bench_train.py's
``ProjectLoop``: the step of ``fit.fit``'s loop (``fit.train_step``: the objective's loss, backward, AdamW and
schedule steps) on models from ``factory.create_model``, every loop's from the same seed, on the same CIFAR-10
training images collated up front. A ``-cache`` loop reads the frozen blocks' states from a ``FrozenStateCache``
filled before timing (as from the second epoch on; the script prints what filling cost per image, which the first
epoch pays), and, as training does with the cache, flips its images instead of cropping them. With --student the
step is REKD of the student (dinov2-s-l2 unless told) distilling a dinov2-s RE teacher of the loop's size (random
heads: the speed of a step does not depend on the weights), whose generator logits come from a filled
``TeacherCache``.

The schedule, the FLOP counting (torch's FlopCounterMode: matrix multiplies and attention, not element-wise work or
the optimizer) and the matmul peak (best of large float32 / bfloat16 matmuls before, during and after the loops)
are bench_train.py's. The first loop is the reference of the printed speed-ups.

    python bench/bench_steps.py 112:zero-f8@bf16 224:zero-f8@bf16 224:drop-f8-cache@bf16 --steps 10
    python bench/bench_steps.py 112:zero@bf16 112:drop@bf16 --student dinov2-s-l2 --steps 10
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402
from bench_train import (  # noqa: E402
    PEAK_DTYPES,
    Models,
    ProjectLoop,
    Timing,
    count_cpu_attention,
    fill_caches,
    host_line,
    make_plan,
    mask_sizes,
    matmul_peak,
    matmul_peaks,
    profile_step,
    report,
    run_project_round,
)

from rekd_core.checkpoint import save_checkpoint  # noqa: E402
from rekd_core.config import TrainConfig  # noqa: E402
from rekd_core.data import load_dataset_spec, stratified_subset  # noqa: E402
from rekd_core.factory import check_teacher_compatible, create_model, load_teacher  # noqa: E402

PATCH = 14  # DINOv2's


def build_models(size: int, args: argparse.Namespace, bundle, split, tmp: Path) -> Models:
    """The RE model of ``args.teacher`` at ``size`` px, or (--student) the student and its frozen RE teacher."""
    common = dict(task="vision", dataset="-", out="-", image_size=size, patch_size=PATCH, batch_size=args.batch,
                  ratio=0.15)
    torch.manual_seed(0)
    teacher_cfg = TrainConfig(mode="re", backbone=args.teacher, lambda_sel=5e-3, **common).resolved()
    teacher = create_model(teacher_cfg, bundle.labels, split)
    if args.student is None:
        return Models(teacher_cfg, teacher, None, bundle.labels, split)
    path = tmp / f"teacher-{size}"
    save_checkpoint(teacher, path)
    cfg = TrainConfig(mode="rekd", backbone=args.student, teacher=str(path), lambda_sel=5e-2, **common).resolved()
    teacher = load_teacher(cfg, torch.device("cpu"))
    student = create_model(cfg, bundle.labels, split)
    check_teacher_compatible(teacher, student)
    return Models(cfg, student, teacher, bundle.labels, split)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("loops", nargs="+", help="SIZE:VARIANT, e.g. 224:drop-f8-cache@bf16")
    parser.add_argument("--teacher", default="dinov2-s", help="the RE model, or the REKD teacher")
    parser.add_argument("--student", help="the REKD student (default: none, an RE step of --teacher)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds after the counting round")
    parser.add_argument("--pass-batches", type=int, default=4, help="distinct batches, cycled over")
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/cifar10"), help="CIFAR-10 (a cifar10 spec)")
    parser.add_argument("--peak-sizes", default="2048,4096", help="matmul sizes of the peak measurement")
    parser.add_argument("--peak-reps", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="after the timings, profile each loop's step and "
                        "print where its CPU time goes")
    args = parser.parse_args()
    args.sizes = []
    for loop in args.loops:
        size, _, variant = loop.partition(":")
        if not size.isdigit() or not variant:
            parser.error(f"loop {loop!r}: expected SIZE:VARIANT, e.g. 224:drop-f8-cache@bf16")
        args.sizes.append((int(size), variant))
    return args


def main() -> None:
    import transformers

    args = parse_args()
    torch.set_num_threads(args.threads)
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    count_cpu_attention()
    sizes = [int(n) for n in args.peak_sizes.split(",")]
    peaks_before = {p: matmul_peak(PEAK_DTYPES[p], sizes, args.peak_reps) for p in PEAK_DTYPES}

    bundle = load_dataset_spec(f"cifar10:{args.data}")
    split = bundle.train.subset(stratified_subset(bundle.train.targets, args.batch * args.pass_batches, seed=0))
    what = (f"REKD step: student {args.student} distilling {args.teacher}" if args.student
            else f"RE step of {args.teacher}")
    print(f"{what}, batch {args.batch}, {args.threads} thread(s), {len(split)} CIFAR-10 images cycled; " + host_line())
    with tempfile.TemporaryDirectory(prefix="rekd-bench-") as tmp_dir:
        models = {size: build_models(size, args, bundle, split, Path(tmp_dir))
                  for size in sorted({s for s, _ in args.sizes})}
        loops = []
        for size, variant in args.sizes:
            loops.append(ProjectLoop(models[size], variant, split))
            loops[-1].name = f"{size}:{variant}"
        fill_caches(loops, "image and flip")
        for size, group in models.items():
            tokens = group.model.predictor.backbone.num_patches
            print(f"{size} px: {tokens} patches, {round(0.15 * tokens)} selected")
        plan = make_plan([0] * args.pass_batches, args.warmup, args.steps)
        timings = {loop.name: Timing(loop.name, loop.precision, {}, {}, {}) for loop in loops}
        probes: dict[str, list[float]] = {p: [] for p in PEAK_DTYPES}
        for r in range(len(plan)):
            run_project_round(loops, plan, timings, probes, sizes[0], r)
    peaks_after = {p: matmul_peak(PEAK_DTYPES[p], sizes, args.peak_reps) for p in PEAK_DTYPES}
    peaks = matmul_peaks(peaks_before, probes, peaks_after, args)
    print("mean training loss over all rounds (finite: each loop trained): "
          + ", ".join(f"{loop.name} {statistics.mean(loop.losses):.3f}" for loop in loops))
    print(mask_sizes(loops))
    print(f"{args.steps} timed rounds; medians:")
    report(list(timings.values()), args.batch, peaks, reference=loops[0].name)
    if args.profile:
        for loop in loops:
            profile_step(loop)


if __name__ == "__main__":
    main()
