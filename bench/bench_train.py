"""Training throughput of text REKD on the CPU (samples per second).

Setting of the rekd_core issue: teacher BERT 2 layers x 128 hidden, student 1 layer x 64 hidden
(from-scratch presets bert-2x128 and bert-1x64, WordPiece vocabulary of 8k trained on the
reviews), max length 256, batch 32, IMDB reviews from the aclImdb tarball.

Variants, each the same objective (tests/test_speedups.py checks it; the first-step losses printed
differ, as each step draws its own Gumbel noise and dropout, over its own padded length):
- reference: the paper's loop: eager attention, full padded length, the teacher generator run
  at every step;
- optimized: fused SDPA attention, padding trimmed per batch, teacher generator logits cached
  per example (they are deterministic: frozen teacher in eval mode, text is never augmented).

Steady state is timed: the first pass over the examples fills the cache and is not counted; the
variants then alternate step by step, so that machine load drifts hit both alike.

    python bench/bench_train.py --data ../shared/data/aclImdb_v1.tar.gz
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from rekd_core.data import load_dataset_spec, stratified_subset
from rekd_core.processing import FeatureDataset, collate
from rekd_core.training import TeacherCache, TrainConfig, build_model, training_loss


def make_models(split, max_length: int):
    teacher_cfg = TrainConfig(task="text", mode="re", backbone="bert-2x128", dataset="-", out="-",
                              max_length=max_length).resolved()
    teacher = build_model(teacher_cfg, ["neg", "pos"], split).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student_cfg = TrainConfig(task="text", mode="rekd", backbone="bert-1x64", dataset="-", out="-", teacher="-",
                              max_length=max_length).resolved()
    student = build_model(student_cfg, ["neg", "pos"], split, tokenizer_source=teacher)
    return teacher, student, student_cfg


def set_attention(model, implementation: str) -> None:
    for module in (model.generator.backbone.encoder, model.predictor.backbone.encoder):
        module.set_attn_implementation(implementation)


def setup_variant(name: str, split, args):
    """Models, data and optimizer of one variant; returns a function that runs one training step
    on the next batch and returns (seconds per sample, loss parts)."""
    torch.manual_seed(0)
    teacher, student, cfg = make_models(split, args.max_length)
    optimized = name == "optimized"
    for model in (teacher, student):
        set_attention(model, "sdpa" if optimized else "eager")
    dataset = FeatureDataset(split, student.processor)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=False,
                                         collate_fn=lambda b: collate(b, trim_padding=optimized))
    cache = TeacherCache(len(dataset), student.num_features) if optimized else None
    optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=5e-4)
    student.train()
    batches = iter(())

    def step():
        nonlocal batches
        batch = next(batches, None)
        if batch is None:
            batches = iter(loader)
            batch = next(batches)
        start = time.perf_counter()
        loss, parts = training_loss(student, batch, cfg, tau=1.0, grid_length=student.num_features,
                                    teacher=teacher, teacher_cache=cache)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return (time.perf_counter() - start) / len(batch["label"]), parts

    return step, len(loader)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/aclImdb_v1.tar.gz", help="aclImdb folder or tarball")
    parser.add_argument("--examples", type=int, default=320, help="reviews per pass (a multiple of the batch size)")
    parser.add_argument("--passes", type=int, default=3, help="passes over the examples; the first is not timed")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--variants", default="reference,optimized")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bundle = load_dataset_spec(f"aclimdb:{args.data}")
    split = bundle.train.subset(stratified_subset(bundle.train.targets, args.examples, seed=0))
    print(f"text REKD, teacher bert-2x128, student bert-1x64, length {args.max_length}, batch {args.batch_size}, "
          f"{args.examples} reviews x {args.passes - 1} timed passes, {args.threads} threads, torch {torch.__version__}")
    names = args.variants.split(",")
    variants = {name: setup_variant(name, split, args) for name in names}
    steps_per_pass = next(iter(variants.values()))[1]
    first = {name: step()[1]["loss"] for name, (step, _) in variants.items()}
    for _ in range(steps_per_pass - 1):  # the rest of the first pass, untimed (it fills the cache)
        for step, _ in variants.values():
            step()
    # timed passes, the variants interleaved step by step so that a drifting machine load hits both
    timings = {name: [] for name in names}
    for _ in range((args.passes - 1) * steps_per_pass):
        for name, (step, _) in variants.items():
            timings[name].append(step()[0])
    rates = {name: 1.0 / statistics.median(t) for name, t in timings.items()}
    for name in names:
        print(f"{name:<10} {rates[name]:7.1f} samples/s  (median over {len(timings[name])} steps; "
              f"first-step loss {first[name]:.5f})")
    if len(names) == 2:
        ratios = [a / b for a, b in zip(timings[names[0]], timings[names[1]])]
        print(f"speed-up {names[1]} / {names[0]}: {statistics.median(ratios):.2f}x "
              f"(median of per-step ratios; ratio of medians {rates[names[1]] / rates[names[0]]:.2f}x)")


if __name__ == "__main__":
    main()
