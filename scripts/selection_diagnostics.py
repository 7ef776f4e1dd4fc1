"""How a rationale model's selection behaves beyond its top-k test accuracy; one CSV row per
checkpoint, which scripts/make_report.py turns into a table.

On a seeded stratified sample of each checkpoint's test split (its training dataset spec):
- accuracy with top-k at the training ratio (the reported number) and with the generator's own
  argmax selection;
- accuracy with the k features the generator ranks lowest ("bottom-k"): far below top-k, the ranking
  carries information even where a random selection does as well as top-k;
- accuracy with one ranking of positions for every example, by how often top-k selects each position
  over the sample, each example keeping as many of its real features as top-k does (its top-ranked
  ones): how much of the selection is a fixed position prior;
- the argmax selection's ratio for each class (the lowest and the highest class): the paper's
  batch-level selection cost pins only the batch-mean count, so a generator is free to select far
  more for one class than for another, which a fixed-ratio top-k then contradicts;
- accuracy with every feature's content removed but the mask kept (text: every word piece becomes
  [UNK]; images: every pixel the normalised mean, 0): above chance, the mask's shape alone carries
  the class;
- accuracy with a random mask of the top-k size on the real content.

    python scripts/selection_diagnostics.py --limit 2000                  # the shipped RE / REKD models
    python scripts/selection_diagnostics.py --limit 2000 runs/text/seeds/teacher-re-s2027
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rekd_core.checkpoint import load_checkpoint, read_config  # noqa: E402
from rekd_core.data import load_dataset_spec, pick_split  # noqa: E402
from rekd_core.losses import SELECTED, topk_mask  # noqa: E402
from rekd_core.metrics import random_mask_like  # noqa: E402
from rekd_core.model import RationaleModel  # noqa: E402
from rekd_core.processing import FeatureDataset, collate, model_inputs  # noqa: E402

COLUMNS = ["checkpoint", "task", "mode", "ratio", "n", "topk_accuracy", "argmax_accuracy", "argmax_ratio",
           "argmax_ratio_lowest_class", "lowest_class", "argmax_ratio_highest_class", "highest_class",
           "topk_content_removed_accuracy", "argmax_content_removed_accuracy", "random_mask_accuracy",
           "bottomk_accuracy", "fixed_positions_accuracy"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="*", help="checkpoint directories (default: the shipped RE / REKD ones)")
    parser.add_argument("--limit", type=int, default=2000, help="test examples per checkpoint (stratified, seeded)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "docs" / "results" / "selection_diagnostics.csv"),
                        help="CSV to update: a checkpoint's row is replaced, the others are kept")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.checkpoints:  # resolved before the chdir below: relative to the caller's directory
        located = {path: Path(path).resolve() for path in args.checkpoints}
    else:
        located = {str(c.parent.relative_to(REPO)): c.parent
                   for c in sorted((REPO / "checkpoints").glob("*/*/config.json"))}
    paths = list(located)
    os.chdir(REPO)  # dataset specs in checkpoints are relative to the repository root
    rows = []
    for path in paths:
        model = load_checkpoint(located[path]).eval()
        if model.generator is None:
            continue
        row = diagnose(model, args.limit, args.seed)
        rows.append({"checkpoint": path, **row})
        print(", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in rows[-1].items()),
              flush=True)
    out = Path(args.out)
    old = pd.read_csv(out) if out.is_file() else pd.DataFrame(columns=COLUMNS)
    new = pd.DataFrame(rows, columns=COLUMNS)
    table = pd.concat([old[~old.checkpoint.isin(new.checkpoint)], new], ignore_index=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    table.to_csv(tmp, index=False)
    tmp.replace(out)
    print(f"wrote {out}")
    return 0


@torch.no_grad()
def diagnose(model: RationaleModel, limit: int, seed: int) -> dict:
    """The diagnostics above for one model, over ``limit`` test examples."""
    dataset = read_config(model.checkpoint_path)["training"]["dataset"]
    split = pick_split(load_dataset_spec(dataset), "test", seed, limit)
    loader = torch.utils.data.DataLoader(FeatureDataset(split, model.processor, train=False), batch_size=64,
                                         collate_fn=collate)
    generator = torch.Generator().manual_seed(seed)
    correct = dict.fromkeys(["topk", "argmax", "topk_blank", "argmax_blank", "random", "bottomk"], 0)
    selected, real, labels, chosen, seen = [], [], [], 0, []
    for batch in loader:
        inputs, targets = model_inputs(batch), batch["label"]
        topk = model(inputs, selection="topk")
        argmax = model(inputs, selection="argmax")
        blank = content_removed(model, inputs)
        random = random_mask_like(topk.feature_mask, model.ratio, generator).to(topk.mask.dtype)
        bottomk = model.select(topk.gen_logits.flip(-1), topk.feature_mask)  # ranked by the "not selected" margin
        for name, logits in (("topk", topk.logits), ("argmax", argmax.logits),
                             ("topk_blank", model.predict(blank, topk.mask)),
                             ("argmax_blank", model.predict(blank, argmax.mask)),
                             ("random", model.predict(inputs, random)),
                             ("bottomk", model.predict(inputs, bottomk))):
            correct[name] += int((logits.argmax(dim=-1) == targets).sum())
        chosen = chosen + topk.mask.sum(dim=0)
        seen.append((inputs, topk.feature_mask, targets))
        selected.append(argmax.mask.sum(dim=1))
        real.append(argmax.feature_mask.sum(dim=1).float())
        labels.append(targets)
    selected, real, labels = torch.cat(selected), torch.cat(real), torch.cat(labels)
    correct["fixed"] = 0
    for inputs, feature_mask, targets in seen:  # a second pass: the ranking needs the whole sample's counts
        fixed = fixed_positions_mask(chosen, feature_mask, model.ratio)
        correct["fixed"] += int((model.predict(inputs, fixed).argmax(dim=-1) == targets).sum())
    per_class = {model.labels[c]: float(selected[labels == c].sum() / real[labels == c].sum())
                 for c in labels.unique().tolist()}
    lowest, highest = min(per_class, key=per_class.get), max(per_class, key=per_class.get)
    n = len(labels)
    return {"task": model.task, "mode": model.config.mode,
            "ratio": model.ratio, "n": n, "topk_accuracy": correct["topk"] / n,
            "argmax_accuracy": correct["argmax"] / n,
            "argmax_ratio": float(selected.sum() / real.sum()),
            "argmax_ratio_lowest_class": per_class[lowest], "lowest_class": lowest,
            "argmax_ratio_highest_class": per_class[highest], "highest_class": highest,
            "topk_content_removed_accuracy": correct["topk_blank"] / n,
            "argmax_content_removed_accuracy": correct["argmax_blank"] / n,
            "random_mask_accuracy": correct["random"] / n,
            "bottomk_accuracy": correct["bottomk"] / n, "fixed_positions_accuracy": correct["fixed"] / n}


def fixed_positions_mask(counts: torch.Tensor, feature_mask: torch.Tensor, ratio: float) -> torch.Tensor:
    """Top-k of each example's real features (k = round(ratio x its real features), as top-k selection
    takes) ranked by ``counts``, the times each position was selected over the sample, not by the
    generator: the same ranking for every example."""
    logits = torch.zeros(*feature_mask.shape, 2)
    logits[..., SELECTED] = counts.to(logits.dtype)
    return topk_mask(logits, feature_mask, ratio)


def content_removed(model: RationaleModel, inputs: dict) -> dict:
    """The inputs with every feature's content replaced by one neutral value (positions kept)."""
    if "input_ids" in inputs:
        unk = model.processor.tokenizer.unk_token_id
        return dict(inputs, input_ids=torch.where(inputs["attention_mask"].bool(),
                                                  torch.full_like(inputs["input_ids"], unk), inputs["input_ids"]))
    return dict(inputs, pixel_values=torch.zeros_like(inputs["pixel_values"]))


if __name__ == "__main__":
    raise SystemExit(main())
