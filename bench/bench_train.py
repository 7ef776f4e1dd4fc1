"""Training speed of a text RE or REKD step: the project's loop against the paper's own loop.

For one configuration (teacher, optional student, padded length, batch, threads, precision) this
times rekd_core's training step and the paper's, interleaved round by round on the same reviews,
and prints samples/s, the median speed-up, and the GFLOP/s each loop reaches: the FLOPs of one of
its steps (forward, backward and the frozen teacher, counted with torch's FlopCounterMode, which
counts matrix multiplies and attention, not element-wise work or the optimizer) over its measured
step time, set against the matrix-multiply peak that the same script measures at the same thread
count: the best rate of large float32 and bfloat16 matmuls timed before and after the loops and
once in every timed round (on a busy machine the peak moves too). Each loop is set against the peak
of its own precision.

Without --student the step is RE training of --teacher; with it, REKD training of --student
distilling a --teacher RE model (random RE heads on the teacher's backbone: the speed of a step
does not depend on the weights).

The project's loop (one loop per --precision) is what ``rekd train`` runs: models from
``factory.create_model`` (the REKD teacher saved with ``save_checkpoint`` and reloaded with
``load_teacher``, as training loads it), batches from ``factory.data_loader`` (padding trimmed to
the longest review of the batch), the step of ``fit.fit``'s loop (``fit.train_step``: the objective's
loss under autocast at the precision, backward, AdamW step, learning-rate schedule step), and for REKD the
teacher generator's logits from a filled ``TeacherCache``: the timings are those of epochs 2 and
later. In the first epoch the teacher generator also runs, once per example; the script fills the
cache before timing and prints what that cost per sample.

The baseline is the paper's own loop, not a copy of it: ``run_epoch`` of run/learn.py in the
reference repository (JiayiDai/REKD), run unmodified from a temporary checkout of a local clone
(--paper-repo; nothing of it is copied into this project). Its ``wandb`` import is stubbed (it only
logs), and so is ``segmentation_models_pytorch`` when it is not installed (imported by
nns/resnet.py for the image models, never reached by text). Its models are its own ``Generator`` and
``Encoder`` classes, which load a BERT with ``AutoModel.from_pretrained`` and transformers' defaults
(SDPA attention): MiniLM-L6 from the installed package's files as they are (its config keeps
attention and hidden dropout 0.1), a from-scratch size from a directory holding this run's initial
weights under BERT's standard dropouts (attention and hidden 0.1, as in every checkpoint the paper
loads). Its heads' dropout is 0.5, its generator word embeddings are frozen, every batch is padded
to the full length, the REKD teacher's generator and predictor both run at every step, it computes
in float32, and ``torch.use_deterministic_algorithms(True)`` is on during its steps as the paper's
run/main.py and run/main_kd.py set it. Its arguments come from the paper's own parser
(utils/params.py) with the flags of its scripts (--get_rationales, --total_features, --target_sparsity,
--select_lambda, --kd_r_lambda), given this run's values. It departs from the paper's runs in three
ways, none in the step itself: it runs under this project's torch and transformers (the paper pins
torch 2.6 and transformers 4.55, which also load BERT with SDPA); it reads the same token ids as the
project's loop (the paper tokenises with bert-base-uncased: for MiniLM-L6 the same 30,522-piece
vocabulary, for a from-scratch size the project's WordPiece one, so both loops have the same
embedding tables); and batches are collated before timing in both loops (the paper's collate also
turns each batch back into tokens, data loading that neither timing includes). A step of the
paper's loop is timed from the moment its ``run_epoch`` receives a batch to the moment it asks for
the next, so its per-step bookkeeping (``.item()`` calls, predictions kept for its metrics) counts.
--paper-attention-dropout overrides its attention dropout: a diagnostic that says what that dropout
costs, printed as not the paper's setting.

Schedule: one counting round per distinct batch length (each loop's step under FlopCounterMode,
untimed; it also warms the loops up), --warmup untimed rounds, then --steps timed rounds. In each
round every project loop runs one step, then (timed rounds) one matmul of each precision, then the
paper's loop runs its step, all on the same reviews. Medians are over the timed rounds; the
speed-up is the median of the per-round ratios of step times.

    python bench/bench_train.py --paper-repo /tmp/REKD --teacher bert-2x128 --student bert-1x64 --batch 32 \\
        --precision fp32,bf16 --steps 40
    python bench/bench_train.py --paper-repo /tmp/REKD --preset minilm-re --steps 10 --pass-batches 2
    python bench/bench_train.py --paper-repo /tmp/REKD --preset minilm-rekd --steps 30
    python bench/bench_train.py --baseline none --preset minilm-rekd     # the project's loop only
    python bench/bench_train.py --paper-repo /tmp/REKD --preset minilm-re --variants zero@bf16 drop@bf16 \
        drop-f4-cache@bf16                                                 # the fast training modes

--variants names the project loops to run (default: ``zero@P`` for each --precision P): the masking (``zero``, the
paper's, or ``drop``), optionally ``-fN`` (--freeze-layers N) or ``-gN`` (the same, the generator's alone:
--freeze-parts generator), ``-cache`` (the frozen blocks' states read from a
filled ``FrozenStateCache``, as from the second epoch on) and ``-eager`` (--attention eager), then ``@fp32`` or
``@bf16``. bench_steps.py times the
vision steps with the same loops.

(``git clone https://github.com/JiayiDai/REKD /tmp/REKD`` gives the clone; a bare one works too.)
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import types
import warnings
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from torch.utils import flop_counter  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from rekd_core.checkpoint import save_checkpoint  # noqa: E402
from rekd_core.config import TrainConfig  # noqa: E402
from rekd_core.data import RawSplit, load_dataset_spec, stratified_subset  # noqa: E402
from rekd_core.factory import check_teacher_compatible, create_model, data_loader, load_teacher  # noqa: E402
from rekd_core.fit import train_step  # noqa: E402
from rekd_core.model import RationaleModel  # noqa: E402
from rekd_core.objectives import objective_for  # noqa: E402
from rekd_core.presets import PRESETS, pretrained_directory  # noqa: E402
from rekd_core.processing import FeatureDataset, collate, model_inputs  # noqa: E402

# The sizes the project now trains (issue: MiniLM-L6 teacher RE step and the student REKD step).
PRESET_RUNS = {
    "minilm-re": dict(teacher="minilm-l6", student=None, length=256, batch=16, precision="fp32,bf16"),
    "minilm-rekd": dict(teacher="minilm-l6", student="bert-2x128", length=256, batch=16, precision="fp32,bf16"),
}
DEFAULTS = dict(teacher="bert-2x128", student=None, length=256, batch=32, precision="fp32")
PEAK_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
VARIANT = re.compile(r"^(?P<masking>zero|drop)(-(?P<parts>[fg])(?P<freeze>\d+))?(?P<cache>-cache)?(?P<eager>-eager)?"
                     r"@(?P<precision>fp32|bf16)$")


def parse_variant(name: str) -> tuple[dict, str]:
    """A project loop's name (``drop-f4-cache@bf16``) -> (TrainConfig overrides, precision)."""
    match = VARIANT.match(name)
    if match is None:
        sys.exit(f"variant {name!r}: expected zero|drop, optionally -fN or -gN, -cache and -eager, then @fp32 or @bf16 "
                 "(e.g. drop-f4-cache-eager@bf16)")
    freeze = int(match["freeze"] or 0)
    if match["cache"] and not freeze:
        sys.exit(f"variant {name!r}: -cache keeps the output of frozen blocks, so it needs -fN or -gN")
    overrides = {"masking": match["masking"], "freeze_layers": freeze,
                 "freeze_parts": "generator" if match["parts"] == "g" else "all",
                 "frozen_cache": "on" if match["cache"] else "off", "attention": "eager" if match["eager"] else "sdpa"}
    return overrides, match["precision"]


# ---------------------------------------------------------------------------------------------- FLOPs

def count_cpu_attention() -> None:
    """Make FlopCounterMode count PyTorch's fused CPU attention kernel (SDPA without dropout on the
    CPU), which torch's registry leaves out: uncounted, the project's attention would add 0 FLOPs.
    Same formula as for the CUDA kernels; the math fallback (dropout) is counted through its bmm."""
    aten = torch.ops.aten
    flop_counter.register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu)(
        lambda q, k, v, *args, out_shape=None, **kw: flop_counter.sdpa_flop_count(q, k, v))
    flop_counter.register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu_backward)(
        lambda g, q, k, v, *args, out_shape=None, **kw: flop_counter.sdpa_backward_flop_count(g, q, k, v))


def matmul_peak(dtype: torch.dtype, sizes: list[int], reps: int) -> tuple[float, float]:
    """(best, median) GFLOP/s of square matmuls of ``dtype`` at the current thread count; the best
    over sizes and repetitions is the peak a step's GFLOP/s is set against."""
    rates = []
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b  # warm-up: thread pool, oneDNN kernel selection
        for _ in range(reps):
            start = time.perf_counter()
            a @ b
            rates.append(2 * n**3 / (time.perf_counter() - start) / 1e9)
    return max(rates), statistics.median(rates)


# ---------------------------------------------------------------------------------- the project's loop

@dataclasses.dataclass
class Models:
    """The models of one configuration: the model to train, the frozen teacher for REKD (as training loads it), and
    how each loop builds its own model (``build``: from the same seed, so that every loop starts from the same
    weights)."""

    cfg: TrainConfig
    model: RationaleModel
    teacher: RationaleModel | None
    labels: list[str] = dataclasses.field(default_factory=list)
    tokenizer_split: RawSplit | None = None

    def build(self, cfg: TrainConfig) -> RationaleModel:
        torch.manual_seed(0)  # as build_models drew the RE model's
        return create_model(cfg, self.labels, self.tokenizer_split, tokenizer_source=self.teacher or self.model)


def build_models(args: argparse.Namespace, labels: list[str], tokenizer_split: RawSplit, tmp: Path) -> Models:
    """rekd_core's own construction (``create_model``; ``load_teacher`` for the REKD teacher)."""
    common = dict(task="text", dataset="-", out="-", max_length=args.length, batch_size=args.batch)
    torch.manual_seed(0)
    if args.train_selection:
        common["train_selection"] = args.train_selection
    teacher_cfg = TrainConfig(mode="re", backbone=args.teacher, **common).resolved()
    teacher = create_model(teacher_cfg, labels, tokenizer_split)
    if args.student is None:
        return Models(teacher_cfg, teacher, None, labels, tokenizer_split)
    save_checkpoint(teacher, tmp / "teacher-checkpoint")
    cfg = TrainConfig(mode="rekd", backbone=args.student, teacher=str(tmp / "teacher-checkpoint"), **common).resolved()
    teacher = load_teacher(cfg, torch.device("cpu"))
    student = create_model(cfg, labels, tokenizer_split, tokenizer_source=teacher)
    check_teacher_compatible(teacher, student)
    return Models(cfg, student, teacher, labels, tokenizer_split)


class ProjectLoop:
    """``fit.train_step`` of the run's objective (``objectives.objective_for``: RE, or REKD with the frozen teacher),
    the step ``training.train`` takes, for one variant (``parse_variant``: masking, frozen blocks and their cache,
    precision), on its own model, built from the same seed as every other loop's. Its temperature stays at
    ``tau0`` (step 0 of the schedule): the speed of a step does not depend on it."""

    def __init__(self, models: Models, variant: str, split: RawSplit):
        from transformers import get_scheduler

        overrides, precision = parse_variant(variant)
        self.name, self.precision = variant, precision
        self.cfg = dataclasses.replace(models.cfg, precision=precision, **overrides).resolved()
        self.model = models.build(self.cfg).train()
        self.objective = objective_for(self.model, self.cfg, torch.device("cpu"), models.teacher)
        dataset = FeatureDataset(split, self.model.processor, train=True, augment=self.cfg.augment != "none",
                                 flip_only=self.cfg.augment == "flip" or self.cfg.frozen_blocks_cached)
        self.batches = list(data_loader(dataset, self.cfg))  # collated up front: data loading is not timed
        self.optimizer = torch.optim.AdamW(self.objective.parameter_groups(), weight_decay=self.cfg.weight_decay)
        self.scheduler = get_scheduler(self.cfg.lr_schedule, self.optimizer, num_warmup_steps=0,
                                       num_training_steps=10**6)
        self.objective.start(dataset)  # its caches: the teacher generator's logits, the frozen blocks' states
        self.losses: list[float] = []
        self.ratios: list[float] = []  # the share of features each training mask selected (what drop reads)

    def fill_cache(self) -> float | None:
        """Fill the teacher's and the frozen blocks' caches over the pass, as the first epoch does; seconds per
        sample (None when the loop has neither)."""
        objective = self.objective
        teacher_cache = getattr(objective, "teacher_cache", None)
        if teacher_cache is None and objective.frozen_cache is None:
            return None
        start = time.perf_counter()
        with torch.no_grad(), objective.autocast():
            for batch in self.batches:
                if teacher_cache is not None:
                    objective.teacher_logits(batch, model_inputs(batch), self.model.num_features)
                objective.lower(batch)
        return (time.perf_counter() - start) / sum(len(b["label"]) for b in self.batches)

    def length(self, index: int) -> int:
        """The size of batch ``index``'s input: its padded length (text) or its image side (vision)."""
        batch = self.batches[index]
        return batch["input_ids"].shape[1] if "input_ids" in batch else batch["pixel_values"].shape[-1]

    def step(self, index: int) -> float:
        """One training step on batch ``index``; its seconds."""
        start = time.perf_counter()
        parts = train_step(self.objective, self.batches[index], self.optimizer, self.scheduler, 0, 1)
        seconds = time.perf_counter() - start
        self.losses.append(parts["loss"])
        if "ratio" in parts:
            self.ratios.append(parts["ratio"])
        return seconds


# ------------------------------------------------------------------------------------ the paper's loop

def checkout(repo: str, into: Path) -> str:
    """Extract HEAD of a local clone (bare or not) of the reference repository into ``into``; its commit."""
    try:
        commit = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], check=True, capture_output=True,
                                text=True).stdout.strip()
        archive = subprocess.run(["git", "-C", repo, "archive", "--format=tar", commit], check=True,
                                 capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        sys.exit(f"--paper-repo {repo}: not a readable git clone of JiayiDai/REKD ({exc})")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return commit


def import_paper_code(root: Path) -> types.SimpleNamespace:
    """The reference code's modules, imported from the checkout at ``root``, with wandb stubbed."""
    wandb = types.ModuleType("wandb")
    wandb.init = wandb.log = wandb.finish = lambda *a, **k: None
    sys.modules["wandb"] = wandb
    try:
        import segmentation_models_pytorch  # noqa: F401
    except ImportError:  # nns/resnet.py imports it for the image models only
        sys.modules["segmentation_models_pytorch"] = types.ModuleType("segmentation_models_pytorch")
    sys.path.insert(0, str(root))
    import nns.encoder
    import nns.generator
    import run.learn
    import utils.learn_settings
    import utils.params

    return types.SimpleNamespace(Generator=nns.generator.Generator, Encoder=nns.encoder.Encoder,
                                 run_epoch=run.learn.run_epoch, get_optimizer=utils.learn_settings.get_optimizer,
                                 parse_args=utils.params.parse_args)


def paper_backbone(spec: str, model: RationaleModel, directory: Path, attention_dropout: float | None) -> str:
    """A directory the paper's BERT class loads with ``AutoModel.from_pretrained`` (its name holds
    "bert", which the paper's code requires): a packaged preset's own files, else this run's initial
    weights of ``model``'s predictor backbone under BERT's standard dropouts. ``attention_dropout``
    overrides the attention dropout (a diagnostic, not the paper's setting)."""
    from transformers import BertConfig

    preset = PRESETS.get(spec)
    if preset is None or preset.task != "text":
        sys.exit(f"the paper's loop runs text presets only, not {spec!r}")
    if preset.packaged:
        directory.mkdir()
        for source in pretrained_directory(preset).iterdir():
            (directory / source.name).symlink_to(source)
        config = json.loads((directory / "config.json").read_text())
    else:
        model.predictor.backbone.encoder.save_pretrained(directory)
        config = json.loads((directory / "config.json").read_text())
        standard = BertConfig()
        config.update(attention_probs_dropout_prob=standard.attention_probs_dropout_prob,
                      hidden_dropout_prob=standard.hidden_dropout_prob)
        for key in ("_attn_implementation", "attn_implementation"):  # leave the choice to transformers' default
            config.pop(key, None)
    if attention_dropout is not None:
        config["attention_probs_dropout_prob"] = attention_dropout
    if attention_dropout is not None or not preset.packaged:
        (directory / "config.json").unlink()
        (directory / "config.json").write_text(json.dumps(config, indent=2))
    return str(directory)


class PaperLoop:
    """The paper's run_epoch over its own models, fed batch by batch by ``_Feeder``."""

    name = "paper fp32"
    precision = "fp32"

    def __init__(self, args: argparse.Namespace, models: Models, split: RawSplit, tmp: Path):
        self.commit = checkout(args.paper_repo, tmp / "REKD")
        self.attention_dropout = args.paper_attention_dropout
        self.code = import_paper_code(tmp / "REKD")
        cfg = models.cfg
        student_spec = args.student or args.teacher
        flags = ["--get_rationales", "--model_form", paper_backbone(student_spec, models.model, tmp / "bert-trained",
                                                         args.paper_attention_dropout),
                 "--total_features", str(args.length), "--target_sparsity", str(cfg.ratio),
                 "--select_lambda", str(cfg.lambda_sel), "--batch_size", str(args.batch), "--init_lr", str(cfg.lr),
                 "--dropout", str(cfg.dropout), "--weight_decay", str(cfg.weight_decay)]
        if models.teacher is not None:
            flags += ["--model_form_t", paper_backbone(args.teacher, models.teacher, tmp / "bert-teacher",
                                                           args.paper_attention_dropout),
                      "--kd_r_lambda", str(cfg.lambda_r), "--alpha_re", str(cfg.alpha)]
        with _argv(["main_kd.py" if models.teacher is not None else "main.py", *flags]), \
                contextlib.redirect_stdout(io.StringIO()):
            self.args = self.code.parse_args()
        self.args.gumbel_t, self.args.lr, self.args.num_class = (self.args.init_t, self.args.init_lr,
                                                                 len(models.model.labels))
        torch.manual_seed(0)
        self.gen, self.enc = self.code.Generator(self.args), self.code.Encoder(self.args)
        self.gen_t = self.enc_t = None
        if models.teacher is not None:
            self.gen_t, self.enc_t = self.code.Generator(self.args, if_t=True), self.code.Encoder(self.args, if_t=True)
            self.gen_t.eval()
            self.enc_t.eval()
        self.optimizer = self.code.get_optimizer([self.gen, self.enc], self.args)
        # the paper's batches: padded to the full length, with its 'text' field
        tokenizer = models.model.processor.tokenizer
        dataset = FeatureDataset(split, models.model.processor)
        self.batches = []
        for batch in torch.utils.data.DataLoader(dataset, batch_size=args.batch,
                                                 collate_fn=lambda b: collate(b, False)):
            self.batches.append({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
                                 "label": batch["label"],
                                 "text": [tokenizer.convert_ids_to_tokens(row) for row in batch["input_ids"].tolist()]})
        self.stats: dict = {}

    def describe(self) -> str:
        bert = self.gen.bert.bert.config
        parts = [f"JiayiDai/REKD @ {self.commit[:7]}, run/learn.py run_epoch, fp32, "
                 f"attention {bert._attn_implementation} with dropout {bert.attention_probs_dropout_prob} "
                 f"(hidden {bert.hidden_dropout_prob}, heads {self.args.dropout}) in the trained model"
                 + (" [attention dropout overridden: not the paper's setting]"
                    if self.attention_dropout is not None else "")]
        if self.gen_t is not None:
            parts.append("teacher generator and predictor run every step")
        return "; ".join(parts)

    def run(self, plan: list[tuple[str, int]], before_step: Callable[[int], None]) -> "_Feeder":
        """Run the paper's run_epoch over ``plan``; ``before_step(r)`` runs before its step of round r."""
        feeder = _Feeder(self.batches, plan, before_step)
        with warnings.catch_warnings():  # its sklearn metrics warn on a few batches of one predicted class
            warnings.filterwarnings("ignore", module=r"sklearn\.")
            self.stats, _, _, _, _ = self.code.run_epoch(feeder, self.gen, self.enc, self.args, True,
                                                         optimizer=self.optimizer, step=0, gen_t=self.gen_t,
                                                         enc_t=self.enc_t)
        return feeder


class _Feeder:
    """What the paper's run_epoch iterates over. Before handing out round r's batch it runs
    ``before_step(r)`` (the project's loops); the paper's step is the span from handing out a batch to
    the request for the next, under deterministic algorithms (as the paper's scripts set them) and, in a
    counting round, under FlopCounterMode."""

    def __init__(self, batches: list[dict], plan: list[tuple[str, int]], before_step: Callable[[int], None]):
        self.batches, self.plan, self.before_step = batches, plan, before_step
        self.round = -1
        self.seconds: dict[int, float] = {}
        self.flops: dict[int, int] = {}  # batch length -> FLOPs of one step
        self._start = 0.0
        self._counter: FlopCounterMode | None = None

    def __len__(self) -> int:
        return len(self.plan)

    def __iter__(self) -> "_Feeder":
        return self

    def __next__(self) -> dict:
        if self.round >= 0:
            self._finish()
        self.round += 1
        if self.round >= len(self.plan):
            raise StopIteration
        kind, index = self.plan[self.round]
        self.before_step(self.round)
        torch.use_deterministic_algorithms(True)
        if kind == "count":
            self._counter = FlopCounterMode(display=False)
            self._counter.__enter__()
        self._start = time.perf_counter()
        return self.batches[index]

    def _finish(self) -> None:
        elapsed = time.perf_counter() - self._start
        kind, index = self.plan[self.round]
        if self._counter is not None:
            self._counter.__exit__(None, None, None)
            self.flops[self.batches[index]["input_ids"].shape[1]] = self._counter.get_total_flops()
            self._counter = None
        torch.use_deterministic_algorithms(False)
        if kind == "time":
            self.seconds[self.round] = elapsed


@contextlib.contextmanager
def _argv(argv: list[str]):
    saved = sys.argv
    sys.argv = argv
    try:
        yield
    finally:
        sys.argv = saved


# ---------------------------------------------------------------------------------------- the bench

def make_plan(lengths: list[int], warmup: int, steps: int) -> list[tuple[str, int]]:
    """(kind, batch index) per round: one counting round per distinct batch length, then warm-up, then
    timed rounds cycling over the batches."""
    first_of = {}
    for index, length in enumerate(lengths):
        first_of.setdefault(length, index)
    plan = [("count", index) for index in first_of.values()]
    plan += [("warm", r % len(lengths)) for r in range(warmup)]
    plan += [("time", (warmup + r) % len(lengths)) for r in range(steps)]
    return plan


@dataclasses.dataclass
class Timing:
    """Per-round seconds of one loop's timed steps, and its FLOPs per step by batch length."""

    name: str
    precision: str
    seconds: dict[int, float]
    flops: dict[int, int]
    lengths: dict[int, int]  # round -> batch length


def run_project_round(loops: list[ProjectLoop], plan: list[tuple[str, int]], timings: dict[str, Timing],
                      probes: dict[str, list[float]], probe_size: int, r: int) -> None:
    """Round r of every project loop: a counted, warm-up or timed step; in a timed round also one
    matmul of each precision, so that the peak is also sampled while the machine runs the loops."""
    kind, index = plan[r]
    if kind == "time":
        for precision, dtype in PEAK_DTYPES.items():
            probes[precision].append(matmul_peak(dtype, [probe_size], 1)[0])
    for loop in loops:
        timing = timings[loop.name]
        if kind == "count":
            with FlopCounterMode(display=False) as counter:
                loop.step(index)
            timing.flops[loop.length(index)] = counter.get_total_flops()
        else:
            seconds = loop.step(index)
            if kind == "time":
                timing.seconds[r] = seconds
                timing.lengths[r] = loop.length(index)


def _quartiles(values: list[float]) -> tuple[float, float]:
    """The middle half of ``values`` (first and third quartiles): how stable a median is."""
    if len(values) < 2:
        return values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4)
    return q1, q3


def speed_up(fast: Timing, slow: Timing) -> str:
    """How many times faster ``fast`` ran than ``slow``, per round, over the rounds both timed."""
    rounds = sorted(set(fast.seconds) & set(slow.seconds))
    ratios = [slow.seconds[r] / fast.seconds[r] for r in rounds]
    q1, q3 = _quartiles(ratios)
    of_medians = (statistics.median(slow.seconds[r] for r in rounds)
                  / statistics.median(fast.seconds[r] for r in rounds))
    return (f"speed-up {fast.name} over {slow.name}: {statistics.median(ratios):.2f}x (median of {len(ratios)} "
            f"per-round ratios, middle half {q1:.2f}-{q3:.2f}x; ratio of medians {of_medians:.2f}x)")


# where a step's CPU time goes: torch profiler op names by kind (the first pattern that matches)
PROFILE_KINDS = [
    ("attention backward", r"flash_attention.*backward|_efficient_attention_backward|_scaled_dot_product.*backward"),
    ("attention forward", r"flash_attention|scaled_dot_product|_efficient_attention"),
    ("matrix multiplies", r"^aten::(mm|addmm|bmm|baddbmm|matmul|linear|_mkldnn|mkldnn_)"),
    ("dtype casts and copies", r"^aten::(copy_|_to_copy|to|clone|contiguous)$"),
    ("normalisation", r"layer_norm|batch_norm|group_norm"),
    ("activations", r"gelu|silu|relu|softmax|tanh|sigmoid"),
    ("dropout masks", r"bernoulli|dropout|native_dropout"),
    ("optimizer", r"AdamW|_foreach|addcdiv|addcmul|lerp|sqrt"),
    ("element-wise arithmetic", r"^aten::(add|mul|div|sub|sum|mean|neg|exp|log|pow|where|masked_fill|fill_|zero_|cat)"),
]


def profile_step(loop: "ProjectLoop", steps: int = 3) -> None:
    """Profile ``steps`` steps of ``loop`` and print the share of its CPU time by kind of op (PROFILE_KINDS)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for index in range(steps):
            loop.step(index % len(loop.batches))
    kinds: dict[str, float] = {}
    for event in prof.key_averages():
        kind = next((k for k, pattern in PROFILE_KINDS if re.search(pattern, event.key)), "other")
        kinds[kind] = kinds.get(kind, 0.0) + event.self_cpu_time_total
    total = sum(kinds.values())
    print(f"profile of {loop.name}, {steps} steps, {total / 1e6 / steps:.2f} s of CPU time a step:")
    for kind, micros in sorted(kinds.items(), key=lambda item: -item[1]):
        print(f"  {kind:<26} {100 * micros / total:5.1f}%")


def host_line() -> str:
    """The software and machine a bench ran on."""
    import transformers

    return (f"torch {torch.__version__}, transformers {transformers.__version__}, "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")


def fill_caches(loops: list["ProjectLoop"], unit: str) -> None:
    """Fill each loop's caches as its first epoch would, and say what that cost per ``unit`` (sample, image)."""
    for loop in loops:
        fill = loop.fill_cache()
        if fill is not None:
            print(f"{loop.name}: caches filled (teacher generator logits, frozen blocks), {1000 * fill:.1f} ms per "
                  f"{unit} (paid once per {unit}, in the first epoch; not in the timings below)")


def matmul_peaks(before: dict, probes: dict[str, list[float]], after: dict, args: argparse.Namespace) -> dict:
    """The peak each precision's step is set against: the best of the matmuls timed before, during and after the
    loops (``before`` / ``after``: (best, median) per precision); printed with the medians."""
    peaks = {p: max(before[p][0], after[p][0], *probes[p]) for p in PEAK_DTYPES}
    print(f"matmul peak, {args.threads} thread(s), sizes {args.peak_sizes}, best of the measurements before "
          f"and after the loops and of one matmul of the first size per timed round: "
          + "; ".join(f"{p} {peaks[p]:.0f} GFLOP/s (medians: before {before[p][1]:.0f}, "
                      f"rounds {statistics.median(probes[p]):.0f}, after {after[p][1]:.0f})" for p in PEAK_DTYPES))
    return peaks


def mask_sizes(loops: list["ProjectLoop"]) -> str:
    """What share of the features the training masks selected, per loop: what a drop step reads."""
    return "training masks selected, mean share of the features: " + ", ".join(
        f"{loop.name} {statistics.mean(loop.ratios):.3f}" for loop in loops if loop.ratios)


def report(timings: list[Timing], batch: int, peaks: dict[str, float], reference: str | None = None) -> None:
    """samples/s, step seconds, GFLOP per step and per second, percentage of the precision's matmul
    peak; the speed-ups over the paper's loop and over the ``reference`` loop."""
    width = max(12, *(len(t.name) for t in timings))
    print(f"{'loop':<{width}} {'samples/s':>9} {'s/step':>7} {'(middle half)':>15} {'GFLOP/step':>10} "
          f"{'GFLOP/s':>8} {'% of peak':>9}")
    for t in timings:
        rounds = sorted(t.seconds)
        seconds = [t.seconds[r] for r in rounds]
        step_s = statistics.median(seconds)
        q1, q3 = _quartiles(seconds)
        rate = statistics.median(t.flops[t.lengths[r]] / t.seconds[r] / 1e9 for r in rounds)
        gflop = statistics.mean(t.flops[t.lengths[r]] for r in rounds) / 1e9
        print(f"{t.name:<{width}} {batch / step_s:9.1f} {step_s:7.3f} {f'({q1:.3f}-{q3:.3f})':>15} {gflop:10.1f} "
              f"{rate:8.1f} {100 * rate / peaks[t.precision]:8.1f}%  ({t.precision} peak {peaks[t.precision]:.0f})")
    by_name = {t.name: t for t in timings}
    for base in (by_name.get(PaperLoop.name), by_name.get(reference)):
        for t in timings:
            if base is not None and t is not base and t.name != PaperLoop.name:
                print(speed_up(t, base))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESET_RUNS), help="a configuration the project trains "
                        "(flags given explicitly still win)")
    parser.add_argument("--teacher",
                        help=f"text preset: the RE model, or the REKD teacher (default {DEFAULTS['teacher']})")
    parser.add_argument("--student", help="text preset: the REKD student (default: none, an RE step of --teacher)")
    parser.add_argument("--length", type=int, help=f"padded length L (default {DEFAULTS['length']})")
    parser.add_argument("--batch", type=int, help=f"batch size (default {DEFAULTS['batch']})")
    parser.add_argument("--precision", help="fp32, bf16 or fp32,bf16: one project loop each (the paper's is fp32)")
    parser.add_argument("--train-selection", choices=["gumbel", "gumbel_topk"],
                        help="the training masks (default: the preset's, else the paper's gumbel, whose masks from "
                             "untrained heads select about half the features: a drop step then reads about half)")
    parser.add_argument("--profile", action="store_true", help="after the timings, profile each project loop's step "
                        "and print where its CPU time goes")
    parser.add_argument("--variants", nargs="+", help="the project loops (module docstring; default: zero@P for each "
                        "--precision P); the first is the reference of the speed-ups")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds after the counting rounds")
    parser.add_argument("--pass-batches", type=int, default=4, help="distinct batches, cycled over")
    parser.add_argument("--baseline", choices=("paper", "none"), default="paper")
    parser.add_argument("--paper-repo", default=os.environ.get("REKD_PAPER_REPO"),
                        help="a local clone of github.com/JiayiDai/REKD (default: $REKD_PAPER_REPO)")
    parser.add_argument("--paper-attention-dropout", type=float,
                        help="diagnostic: the attention dropout of the paper's BERTs (default: theirs, 0.1)")
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/aclImdb_v1.tar.gz"),
                        help="aclImdb folder or tarball")
    parser.add_argument("--tokenizer-examples", type=int, default=5000,
                        help="reviews a from-scratch preset's WordPiece vocabulary is trained on")
    parser.add_argument("--peak-sizes", default="2048,4096", help="matmul sizes of the peak measurement")
    parser.add_argument("--peak-reps", type=int, default=3)
    args = parser.parse_args()
    for key, value in {**DEFAULTS, **PRESET_RUNS.get(args.preset, {})}.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    precisions = args.precision.split(",")
    if any(p not in PEAK_DTYPES for p in precisions):
        parser.error("--precision takes fp32, bf16 or fp32,bf16")
    args.variants = args.variants or [f"zero@{p}" for p in precisions]
    if args.baseline == "paper" and not args.paper_repo:
        parser.error("the paper's loop needs a clone of its repository: git clone https://github.com/JiayiDai/REKD "
                     "/tmp/REKD, then --paper-repo /tmp/REKD (or --baseline none)")
    return args


def main() -> None:
    import transformers

    args = parse_args()
    torch.set_num_threads(args.threads)
    transformers.utils.logging.disable_progress_bar()  # saving and loading weights draw progress bars
    transformers.utils.logging.set_verbosity_error()  # and report the unused pooler weights they leave out
    count_cpu_attention()
    sizes = [int(n) for n in args.peak_sizes.split(",")]
    peaks_before = {p: matmul_peak(PEAK_DTYPES[p], sizes, args.peak_reps) for p in PEAK_DTYPES}

    bundle = load_dataset_spec(f"aclimdb:{args.data}")
    split = bundle.train.subset(stratified_subset(bundle.train.targets, args.batch * args.pass_batches, seed=0))
    tokenizer_split = bundle.train.subset(stratified_subset(bundle.train.targets, args.tokenizer_examples, seed=1))
    what = (f"REKD step: student {args.student} distilling teacher {args.teacher}" if args.student
            else f"RE step of {args.teacher}")
    print(f"{what}, length {args.length}, batch {args.batch}, {args.threads} thread(s), {len(split)} reviews cycled; "
          + host_line())

    with tempfile.TemporaryDirectory(prefix="rekd-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        models = build_models(args, bundle.labels, tokenizer_split, tmp)
        loops = [ProjectLoop(models, variant, split) for variant in args.variants]
        paper = PaperLoop(args, models, split, tmp) if args.baseline == "paper" else None
        fill_caches(loops, "sample")
        trimmed = [loops[0].length(i) for i in range(len(loops[0].batches))]
        print(f"project loop: batch lengths after trimming {trimmed} (of {args.length})")
        if paper is not None:
            print(f"paper loop: {paper.describe()}")
        plan = make_plan(trimmed, args.warmup, args.steps)
        timings = {loop.name: Timing(loop.name, loop.precision, {}, {}, {}) for loop in loops}
        probes: dict[str, list[float]] = {p: [] for p in PEAK_DTYPES}
        run_round = lambda r: run_project_round(loops, plan, timings, probes, sizes[0], r)  # noqa: E731
        if paper is None:
            for r in range(len(plan)):
                run_round(r)
        else:
            feeder = paper.run(plan, run_round)
            length = args.length
            timings[paper.name] = Timing(paper.name, "fp32", feeder.seconds, feeder.flops,
                                         {r: length for r in feeder.seconds})
    peaks_after = {p: matmul_peak(PEAK_DTYPES[p], sizes, args.peak_reps) for p in PEAK_DTYPES}
    peaks = matmul_peaks(peaks_before, probes, peaks_after, args)
    losses = {loop.name: statistics.mean(loop.losses) for loop in loops}
    if paper is not None:
        losses[paper.name] = paper.stats["loss"]
    print("mean training loss over all rounds (finite: each loop trained; not comparable across loops, the "
          "paper's KD_R compares Gumbel-noised distributions): "
          + ", ".join(f"{name} {value:.3f}" for name, value in losses.items()))
    print(mask_sizes(loops))
    print(f"{len([k for k, _ in plan if k == 'time'])} timed rounds after {len([k for k, _ in plan if k != 'time'])} "
          f"untimed ones (FLOP counting, warm-up); medians:")
    report(list(timings.values()), args.batch, peaks, reference=args.variants[0])
    if args.profile:
        for loop in loops:
            profile_step(loop)


if __name__ == "__main__":
    main()
