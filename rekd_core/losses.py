"""Selection and distillation primitives: the straight-through Gumbel sampler, deterministic
selection (argmax, top-k), the selection cost and the two KD losses of REKD (METHOD.md)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

SELECTED = 1  # index of the "selected" logit; 0 is "not selected"


def straight_through_gumbel(logits: Tensor, tau: float, noise: Tensor | None = None) -> Tensor:
    """Sample a hard 0/1 selection per feature from two-way ``logits`` (..., 2).

    Forward: the one-hot argmax of ``softmax((logits + g) / tau)`` with ``g ~ Gumbel(0, 1)``;
    backward: the gradient of the soft probabilities (straight-through). Returns the
    "selected" component, shape ``logits.shape[:-1]``. ``noise`` replaces the sampled ``g``
    (tests, reproducibility).
    """
    if noise is None:
        uniform = torch.rand_like(logits).clamp_(1e-10, 1.0 - 1e-7)
        noise = -torch.log(-torch.log(uniform))
    soft = F.softmax((logits + noise) / tau, dim=-1)
    hard = F.one_hot(soft.argmax(dim=-1), num_classes=logits.shape[-1]).to(soft.dtype)
    return (hard - soft.detach() + soft)[..., SELECTED]


def gumbel_topk_mask(logits: Tensor, feature_mask: Tensor, ratio: float, tau: float) -> Tensor:
    """A hard selection of exactly ``round(ratio * n_real)`` features per example, sampled without
    replacement (the top-k of Gumbel-perturbed scores), for training one model at many ratios.

    The straight-through gradient is that of a relaxed top-k, ``min(1, k * softmax(scores / tau))`` over
    the example's features: like the count, it depends only on how the scores rank against each other.
    A per-feature sigmoid (``straight_through_gumbel``'s) lets every score drift up together, nothing
    pushing back once the count is fixed, until the sigmoid saturates and the gradient dies (measured on
    the planted-word task: the generator's own argmax selected 1.000 of the features and the accuracy
    stayed at 0.50; with this relaxation, 1.00)."""
    uniform = torch.rand_like(logits).clamp_(1e-10, 1.0 - 1e-7)
    perturbed = logits - torch.log(-torch.log(uniform))
    hard = topk_mask(perturbed, feature_mask, ratio)
    margin = selection_scores(perturbed).masked_fill(~feature_mask, float("-inf"))
    k = hard.sum(dim=1, keepdim=True)
    soft = (k * F.softmax(margin / tau, dim=1)).clamp(max=1.0)
    return (hard - soft.detach() + soft) * feature_mask


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.scale * grad, None


def reverse_gradient(x: Tensor, scale: float) -> Tensor:
    """``x`` forward; ``-scale`` times the gradient backward (Ganin & Lempitsky 2015). Whatever lies below
    it is trained against the loss that the layers above it minimise."""
    return _ReverseGradient.apply(x, scale)


def selection_scores(logits: Tensor) -> Tensor:
    """The generator's preference for selecting each feature: the selected-logit margin."""
    return logits[..., SELECTED] - logits[..., 1 - SELECTED]


def argmax_mask(logits: Tensor, feature_mask: Tensor) -> Tensor:
    """Deterministic selection: a feature is selected when its selected logit wins."""
    return ((selection_scores(logits) > 0) & feature_mask).to(logits.dtype)


def topk_mask(logits: Tensor, feature_mask: Tensor, ratio: float) -> Tensor:
    """Select exactly ``k = round(ratio * n_real)`` real features per example by score."""
    scores = selection_scores(logits).masked_fill(~feature_mask, float("-inf"))
    k = torch.round(feature_mask.sum(dim=1).to(torch.float64) * ratio).long()
    order = scores.argsort(dim=1, descending=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return ((rank < k.unsqueeze(1)) & feature_mask).to(logits.dtype)


def selection_cost(mask: Tensor, ratio: float, length: Tensor | float, per_example: bool = False) -> Tensor:
    """``(mean over batch of sum_l m_l - ratio * L)^2``, the square of the batch-mean count.

    ``length`` is the number of features L: a number (the reference code: the padded length for
    text, the patch count for images) or a per-example tensor (the real lengths).
    ``per_example``: the mean over examples of ``(sum_l m_l - ratio * L)^2`` instead. The paper's
    batch-level cost only pins the average count, so a generator can select many features for one
    class and few for another (its rationale length then carries the class); this one pins each
    rationale's length.
    """
    length = torch.as_tensor(length, dtype=mask.dtype, device=mask.device)
    if per_example:
        return ((mask.sum(dim=1) - ratio * length) ** 2).mean()
    return (mask.sum(dim=1).mean() - ratio * length.mean()) ** 2


def rationale_kd(student_logits: Tensor, teacher_logits: Tensor, tau: float, feature_mask: Tensor,
                 scale: str = "none", teacher_mask: Tensor | None = None) -> Tensor:
    """KD_R: KL(teacher || student) of the per-feature {not, selected} distributions at ``tau``,
    summed over real features and both classes, averaged over the batch.

    ``scale="none"`` is the paper's. ``"tau2"`` multiplies it by tau^2, as the paper does for KD_Y
    (the usual correction for the 1/tau^2 gradient scale of softened targets).
    With ``teacher_mask`` (0/1 per feature, e.g. the teacher's top-k selection) the teacher's
    distribution is that hard choice instead of its softened logits: KL to a one-hot target is the
    student's cross-entropy on the teacher's choice."""
    log_p_student = F.log_softmax(student_logits / tau, dim=-1)
    if teacher_mask is None:
        log_p_teacher = F.log_softmax(teacher_logits / tau, dim=-1)
        kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=-1)
    else:
        selected = teacher_mask.to(log_p_student.dtype)
        kl = -(selected * log_p_student[..., 1] + (1.0 - selected) * log_p_student[..., 0])
    return (kl * feature_mask).sum(dim=1).mean() * (tau**2 if scale == "tau2" else 1.0)


def prediction_kd(student_logits: Tensor, teacher_logits: Tensor, tau: float, hard: bool = False) -> Tensor:
    """KD_Y scaled by tau^2: ``tau^2 * KL(softmax(z_T / tau) || softmax(z_S / tau))``, batch mean.

    With ``hard`` the teacher's target is its argmax label (one-hot) instead of its soft distribution.
    """
    log_p_student = F.log_softmax(student_logits / tau, dim=-1)
    if hard:
        target = F.one_hot(teacher_logits.argmax(dim=-1), teacher_logits.shape[-1]).to(log_p_student.dtype)
    else:
        target = F.softmax(teacher_logits / tau, dim=-1)
    kl = F.kl_div(log_p_student, target, reduction="batchmean")
    return tau**2 * kl
