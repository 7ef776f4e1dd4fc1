"""Explain raw inputs: the prediction, the class probabilities and the selected word pieces (and the whole
words they belong to) or patches, and the comparison of a teacher's explanation with a student's."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import torch
from PIL import Image

from .errors import ConfigError, DataError
from .evaluation import rationale_probabilities
from .losses import selection_scores
from .metrics import faithfulness_per_example, mask_agreement
from .model import RationaleModel
from .words import Word, merge_word_pieces, selected_words, special_tokens


@dataclass
class Explanation:
    label: str  # predicted class name
    label_index: int
    probs: dict[str, float]  # class name -> probability
    selected: list[int]  # indices of the selected features (word pieces or patches, row-major)
    num_features: int  # selectable features: the word pieces but the special tokens (of a model that
    # excludes them: config ``unselectable_token_ids``), or the patches
    ratio: float  # selected / selectable features (1.0 for a CLS model, which reads everything)
    scores: list[float] = field(default_factory=list)  # generator's selection score per word piece or patch
    selectable: list[int] = field(default_factory=list)  # indices of the selectable word pieces or patches
    length: int = 0  # word pieces read (special tokens included) or patches: the range of the indices
    tokens: list[str] | None = None  # text: the word pieces the model read
    offsets: list[tuple[int, int]] | None = None  # text: character span of each word piece in the input
    truncated: bool = False  # text: the input was longer than the model's max length
    words: list[Word] | None = None  # text: the words of the input the model read, each with its word pieces
    special_pieces: list[int] = field(default_factory=list)  # text: the special pieces ([CLS], [SEP]), in no word
    grid_side: int | None = None  # vision: patches per side
    patch_size: int | None = None  # vision: pixels per patch side, at the model's image size
    # how the predictor read the selection: zero (every feature, unselected as zero vectors) or drop (only the
    # selected ones); None for a CLS model, which reads everything
    masking: str | None = None
    # ``explain(..., faithfulness=True)``, a selecting model: y' (``label``, the class predicted from the whole
    # input), p(y'|x) ``p_full``, p(y'|rationale) ``p_rationale``, p(y'|x without the rationale) ``p_complement``,
    # ``sufficiency`` (p_full - p_rationale) and ``comprehensiveness`` (p_full - p_complement); METHOD.md
    faithfulness: dict | None = None

    @property
    def selection_probabilities(self) -> list[float]:
        """The generator's probability of keeping each feature: the softmax of its two logits, which is the sigmoid
        of ``scores`` (their margin); empty for a CLS model. Top-k keeps the ``k`` most probable, whatever their
        probability."""
        return [0.5 * (1.0 + math.tanh(score / 2)) for score in self.scores]

    def to_dict(self, text: str | None = None) -> dict:
        """The explanation as plain data; with the explained ``text``, also the whole words selected."""
        data = asdict(self)
        if self.tokens is not None:
            data["selected_tokens"] = [self.tokens[i] for i in self.selected]
            if text is not None:
                data["selected_words"] = selected_words(text, self)
        return data


@torch.no_grad()
def explain(model: RationaleModel, inputs: Sequence[str | Image.Image], ratio: float | None = None,
            selection: str = "topk", batch_size: int = 32, faithfulness: bool = False) -> list[Explanation]:
    """Explain each input (texts for a text model, PIL images for a vision model).

    With ``ratio`` the generator's top-k features are re-selected at that ratio (inference-time
    override); otherwise the model's training ratio is used. ``faithfulness``: also each explanation's
    sufficiency and comprehensiveness (``Explanation.faithfulness``; two more passes of the predictor).
    """
    if ratio is not None and not 0.0 < ratio <= 1.0:
        raise ConfigError(f"ratio must be in (0, 1], got {ratio}")
    _check_inputs(model, inputs)
    explanations: list[Explanation] = []
    for start in range(0, len(inputs), batch_size):
        chunk = list(inputs[start:start + batch_size])
        features = {k: v.to(model.device) for k, v in model.processor(chunk).items()}
        out = model(features, selection=selection, ratio=ratio)
        probs = out.logits.float().softmax(dim=-1).cpu()
        selectable = out.feature_mask.cpu()
        mask = out.mask.cpu() if out.mask is not None else selectable.float()
        lengths = features["attention_mask"].sum(dim=1).tolist() if "attention_mask" in features else None
        scores = selection_scores(out.gen_logits).float().cpu() if out.gen_logits is not None else None
        faithful = _faithfulness(model, features, out) if faithfulness and out.mask is not None else None
        for row, item in enumerate(chunk):
            n, read = int(selectable[row].sum()), int(lengths[row]) if lengths else mask.shape[1]
            index = int(probs[row].argmax())
            selected = mask[row, :read].nonzero().squeeze(1).tolist()
            exp = Explanation(label=model.labels[index], label_index=index,
                              probs={name: float(p) for name, p in zip(model.labels, probs[row])},
                              selected=selected, num_features=n, ratio=len(selected) / max(n, 1),
                              scores=scores[row, :read].tolist() if scores is not None else [],
                              selectable=selectable[row, :read].nonzero().squeeze(1).tolist(), length=read,
                              masking=model.masking if model.generator is not None else None,
                              faithfulness=faithful[row] if faithful else None)
            _describe_features(model, item, exp)
            explanations.append(exp)
    return explanations


def _faithfulness(model: RationaleModel, features: dict, out) -> list[dict]:
    """Each example's ``Explanation.faithfulness``, by the definition ``evaluate`` averages over a split."""
    found = rationale_probabilities(model, features, out.logits, out.mask, out.feature_mask)
    sufficiency, comprehensiveness = faithfulness_per_example(found["p_full"], found["p_rationale"],
                                                              found["p_complement"])
    return [{"label": model.labels[int(label)], "p_full": float(full), "p_rationale": float(rationale),
             "p_complement": float(complement), "sufficiency": float(suff), "comprehensiveness": float(comp)}
            for label, full, rationale, complement, suff, comp in zip(
                found["label"].tolist(), found["p_full"], found["p_rationale"], found["p_complement"], sufficiency,
                comprehensiveness)]


def compare(teacher: Explanation, student: Explanation) -> dict:
    """Agreement of two explanations of the same input: which features both, only the teacher or only
    the student selected; mask IoU and F1 (None, undefined, when neither selected anything); whether
    the predictions agree."""
    if teacher.length != student.length:
        raise ConfigError("teacher and student explanations cover different feature grids")
    n = teacher.length
    t_mask, s_mask = torch.zeros(1, n), torch.zeros(1, n)
    t_mask[0, teacher.selected], s_mask[0, student.selected] = 1.0, 1.0
    agreement = mask_agreement(t_mask, s_mask, torch.ones(1, n, dtype=torch.bool))
    t_set, s_set = set(teacher.selected), set(student.selected)
    empty = not (t_set or s_set)
    return {"both": sorted(t_set & s_set), "teacher_only": sorted(t_set - s_set), "student_only": sorted(s_set - t_set),
            "iou": None if empty else agreement["iou"], "f1": None if empty else agreement["f1"],
            "labels_agree": teacher.label == student.label}


def _check_inputs(model: RationaleModel, inputs: Sequence) -> None:
    if len(inputs) == 0:
        raise DataError("nothing to explain: no input given")
    want = str if model.task == "text" else Image.Image
    if not all(isinstance(item, want) for item in inputs):
        raise DataError(f"a {model.task} model explains {'texts' if model.task == 'text' else 'images'}")


def _describe_features(model: RationaleModel, item, exp: Explanation) -> None:
    processor = model.processor
    if model.task == "text":
        exp.tokens, exp.offsets = processor.tokens_with_offsets(item)
        exp.words, exp.special_pieces = merge_word_pieces(item, exp.offsets, exp.tokens,
                                                          special_tokens(processor.tokenizer))
        pieces = processor.tokenizer(item, truncation=False, verbose=False)["input_ids"]  # no "longer than" warning
        exp.truncated = len(pieces) > processor.max_length
    else:
        exp.grid_side, exp.patch_size = processor.grid_side, processor.patch_size
