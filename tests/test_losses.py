"""Selection and distillation losses and the schedules, against hand-computed values (the arithmetic
is written beside each case). ln 2 = 0.693147, ln 3 = 1.098612, ln 1.5 = 0.405465, ln 50 = 3.912023."""
from __future__ import annotations

import math

import pytest
import torch

from rekd_core.losses import (
    argmax_mask,
    prediction_kd,
    rationale_kd,
    reverse_gradient,
    selection_cost,
    selection_scores,
    straight_through_gumbel,
    topk_mask,
)
from rekd_core.schedules import TAU_MIN, alpha_at, tau_at

T, F = True, False
approx = pytest.approx
LN3 = math.log(3.0)
# KL([0.25, 0.75] || [0.5, 0.5]) = 0.25 ln(0.25/0.5) + 0.75 ln(0.75/0.5)
#                                = 0.25 * (-0.693147) + 0.75 * 0.405465 = -0.173287 + 0.304099 = 0.130812
KL_QUARTER = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)


# ---------------------------------------------------------------------------------------------
# straight-through Gumbel


def test_gumbel_forward_is_the_hard_selected_component():
    # logits [0, 1] + noise [0, 0], tau 1: soft = softmax([0, 1]) = [0.2689, 0.7311] -> argmax 1
    # -> the "selected" component of the one-hot is exactly 1.0 (not 0.7311)
    out = straight_through_gumbel(torch.tensor([[0.0, 1.0]]), 1.0, noise=torch.zeros(1, 2))
    assert out.shape == (1,)
    assert out.item() == 1.0
    # the noise decides: noise [2, 0] -> [2, 1] -> argmax 0 -> selected component 0.0
    out = straight_through_gumbel(torch.tensor([[0.0, 1.0]]), 1.0, noise=torch.tensor([[2.0, 0.0]]))
    assert out.item() == 0.0


def test_gumbel_output_shape_drops_the_class_axis():
    logits = torch.zeros(3, 5, 2)
    noise = torch.zeros(3, 5, 2)
    noise[..., 1] = 1.0  # every feature selected
    out = straight_through_gumbel(logits, 0.5, noise=noise)
    assert out.shape == (3, 5)
    assert out.eq(1.0).all()


def test_gumbel_gradient_is_the_soft_probability_gradient():
    # logits z = [1.0, 0.5], noise g = [0.5, -0.5], tau = 2:
    #   (z + g) / tau = [1.5, 0.0] / 2 = [0.75, 0.0]
    #   s0 = e^0.75 / (e^0.75 + 1) = 2.117000 / 3.117000 = 0.679179,  s1 = 0.320821
    #   hard = one_hot(argmax) = [1, 0] -> forward value (selected component) = 0
    #   d s1 / d z0 = -s0 s1 / tau = -0.679179 * 0.320821 / 2 = -0.108947
    #   d s1 / d z1 = +s1 (1 - s1) / tau = +0.108947
    z = torch.tensor([[1.0, 0.5]], requires_grad=True)
    out = straight_through_gumbel(z, 2.0, noise=torch.tensor([[0.5, -0.5]]))
    assert out.item() == 0.0
    out.sum().backward()
    s1 = 1.0 / (1.0 + math.exp(0.75))
    s0 = 1.0 - s1
    assert s1 == approx(0.320821, abs=1e-6)
    expected = [-s0 * s1 / 2.0, s0 * s1 / 2.0]
    assert expected[1] == approx(0.108947, abs=1e-6)
    assert z.grad[0].tolist() == approx(expected, abs=1e-6)


def test_gumbel_gradient_matches_autograd_of_softmax():
    # Same check on a batch: the straight-through gradient equals the gradient of the soft "selected"
    # probability softmax((z + g) / tau)[..., 1], whatever the hard value is.
    torch.manual_seed(0)
    z = torch.randn(4, 6, 2)
    g = torch.randn(4, 6, 2)
    weights = torch.randn(4, 6)
    z1 = z.clone().requires_grad_(True)
    (straight_through_gumbel(z1, 0.7, noise=g) * weights).sum().backward()
    z2 = z.clone().requires_grad_(True)
    (torch.softmax((z2 + g) / 0.7, dim=-1)[..., 1] * weights).sum().backward()
    assert torch.allclose(z1.grad, z2.grad, atol=1e-6)


def test_gumbel_samples_noise_when_none_given():
    torch.manual_seed(0)
    logits = torch.zeros(2000, 2)  # equal logits: each side wins half the time
    out = straight_through_gumbel(logits, 1.0)
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    assert 0.4 < out.mean().item() < 0.6
    logits = torch.tensor([[0.0, 3.0]]).expand(2000, 2)  # P(selected) = sigmoid(3) = 0.9526
    assert straight_through_gumbel(logits, 1.0).mean().item() == approx(0.9526, abs=0.03)


# ---------------------------------------------------------------------------------------------
# deterministic selections


def _logits_from_scores(scores) -> torch.Tensor:
    """Two-way logits whose selected-logit margin (l1 - l0) is ``scores``."""
    scores = torch.as_tensor(scores, dtype=torch.float32)
    return torch.stack([torch.zeros_like(scores), scores], dim=-1)


def test_selection_scores_is_the_margin():
    logits = torch.tensor([[[1.0, 3.0], [2.0, -1.0]]])
    assert selection_scores(logits).tolist() == [[2.0, -3.0]]  # 3 - 1, -1 - 2


def test_topk_selects_round_ratio_times_real_features_and_never_padding():
    scores = [[0.1, 0.9, -0.3, 0.5, 0.2, 5.0],  # 5 real, the padding has the best score
              [0.4, -1.0, 0.3, 9.0, 9.0, 9.0]]  # 3 real
    fm = torch.tensor([[T, T, T, T, T, F], [T, T, T, F, F, F]])
    mask = topk_mask(_logits_from_scores(scores), fm, 0.4)
    # row 0: k = round(0.4 * 5) = 2 -> the two best real scores: 0.9 (idx 1), 0.5 (idx 3)
    # row 1: k = round(0.4 * 3 = 1.2) = 1 -> 0.4 (idx 0)
    assert mask.tolist() == [[0, 1, 0, 1, 0, 0], [1, 0, 0, 0, 0, 0]]
    assert mask.dtype == torch.float32
    # ratio 1.0 selects every real feature, still no padding
    full = topk_mask(_logits_from_scores(scores), fm, 1.0)
    assert full.tolist() == fm.float().tolist()


@pytest.mark.parametrize("ratio, n_real, k", [(0.1, 32, 3), (0.3, 7, 2), (0.5, 7, 4), (0.1, 4, 0), (0.15, 16, 2)])
def test_topk_count_is_round_ratio_n(ratio, n_real, k):
    # 0.1*32 = 3.2 -> 3; 0.3*7 = 2.1 -> 2; 0.5*7 = 3.5 -> 4; 0.1*4 = 0.4 -> 0; 0.15*16 = 2.4 -> 2
    torch.manual_seed(1)
    fm = torch.zeros(1, 40, dtype=torch.bool)
    fm[0, :n_real] = True
    mask = topk_mask(torch.randn(1, 40, 2), fm, ratio)
    assert int(mask.sum()) == k
    assert mask[0, n_real:].sum() == 0


def test_topk_with_ties_selects_exactly_k():
    # all scores equal: any 2 of the 4 real features, but exactly 2 and none of the padding
    fm = torch.tensor([[T, T, T, T, F, F]])
    mask = topk_mask(torch.zeros(1, 6, 2), fm, 0.5)
    assert int(mask.sum()) == 2
    assert mask[0, 4:].sum() == 0
    # a tie at the boundary: scores [3, 1, 1, 0] with k = 2 -> idx 0 plus one of the tied idx 1, 2
    mask = topk_mask(_logits_from_scores([[3.0, 1.0, 1.0, 0.0, 7.0, 7.0]]), fm, 0.5)
    assert int(mask.sum()) == 2 and mask[0, 0] == 1 and mask[0, 3] == 0 and mask[0, 4:].sum() == 0


def test_argmax_mask_selects_positive_margins_of_real_features():
    scores = [[0.5, -0.5, 0.0, 2.0, 3.0]]  # margin 0 is a tie: not selected (selected must win)
    fm = torch.tensor([[T, T, T, T, F]])
    assert argmax_mask(_logits_from_scores(scores), fm).tolist() == [[1, 0, 0, 1, 0]]


# ---------------------------------------------------------------------------------------------
# selection cost


def test_selection_cost_with_a_scalar_length():
    mask = torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0]], requires_grad=True)
    # counts 2 and 3 -> batch mean 2.5; target 0.25 * 4 = 1 -> (2.5 - 1)^2 = 2.25
    cost = selection_cost(mask, 0.25, 4)
    assert cost.item() == approx(2.25)
    # d cost / d m_bl = 2 (2.5 - 1) / B = 2 * 1.5 / 2 = 1.5 for every entry
    cost.backward()
    assert mask.grad.tolist() == [[1.5] * 4, [1.5] * 4]


def test_selection_cost_with_per_example_lengths():
    mask = torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0]])
    # real lengths 4 and 8 -> target 0.25 * mean(4, 8) = 0.25 * 6 = 1.5 -> (2.5 - 1.5)^2 = 1.0
    assert selection_cost(mask, 0.25, torch.tensor([4, 8])).item() == approx(1.0)
    # exactly on target: counts 1 and 2 -> mean 1.5 -> 0
    assert selection_cost(torch.tensor([[1.0, 0, 0, 0], [1.0, 1, 0, 0]]), 0.25, torch.tensor([4.0, 8.0])).item() == 0.0
    # the square of the batch mean, not the mean of squares: counts 0 and 4, target 2 -> (2 - 2)^2 = 0
    assert selection_cost(torch.tensor([[0.0] * 4, [1.0] * 4]), 0.5, 4).item() == 0.0


def test_per_example_selection_cost_pins_every_count():
    # counts 0 and 4, target 2 each: the batch mean is on target, but ((0-2)^2 + (4-2)^2) / 2 = 4
    mask = torch.tensor([[0.0] * 4, [1.0] * 4], requires_grad=True)
    cost = selection_cost(mask, 0.5, 4, per_example=True)
    assert cost.item() == approx(4.0)
    # d/dm_bl = 2 (count_b - 2) / B: -2 for the empty example, +2 for the full one
    cost.backward()
    assert mask.grad.tolist() == [[-2.0] * 4, [2.0] * 4]
    # per-example real lengths 4 and 8 at ratio 0.25: targets 1 and 2; counts 2 and 2 -> (1 + 0) / 2
    counts_two = torch.tensor([[1.0, 1, 0, 0, 0, 0, 0, 0], [1.0, 1, 0, 0, 0, 0, 0, 0]])
    assert selection_cost(counts_two, 0.25, torch.tensor([4.0, 8.0]), per_example=True).item() == approx(0.5)


# ---------------------------------------------------------------------------------------------
# rationale distillation KD_R


def test_rationale_kd_hand_computed():
    # tau 2; teacher logits [0, 2 ln 3] / 2 = [0, ln 3] -> p_T = [1/4, 3/4]; student [0, 0] -> [1/2, 1/2]
    # per real feature KL(p_T || p_S) = 0.130812 (see KL_QUARTER)
    # example 0: 2 real features (+1 padding with wild logits)  -> 2 * 0.130812 = 0.261624
    # example 1: 1 real feature  (+2 padding)                   -> 0.130812
    # batch mean = (0.261624 + 0.130812) / 2 = 0.196218
    teacher = torch.tensor([0.0, 2 * LN3]).expand(2, 3, 2).clone()
    student = torch.zeros(2, 3, 2)
    student[0, 2] = torch.tensor([10.0, -10.0])  # padding: would add a large KL if it were counted
    student[1, 1:] = torch.tensor([-8.0, 8.0])
    fm = torch.tensor([[T, T, F], [T, F, F]])
    kd = rationale_kd(student, teacher, 2.0, fm)
    assert KL_QUARTER == approx(0.130812, abs=1e-6)
    assert kd.item() == approx((2 * KL_QUARTER + KL_QUARTER) / 2, abs=1e-6)
    assert kd.item() == approx(0.196218, abs=1e-6)
    # the tau2 option scales it like KD_Y: 2^2 * 0.196218
    assert rationale_kd(student, teacher, 2.0, fm, scale="tau2").item() == approx(4 * 0.196218, abs=1e-5)


def test_rationale_kd_to_a_hard_teacher_mask_is_cross_entropy_on_the_teacher_choice():
    # tau 1; student logits [0, ln 3] -> p_S = [1/4, 3/4]; the teacher's logits are ignored
    # example 0: features chosen 1, 0 (+1 padding) -> -ln(3/4) - ln(1/4) = 0.287682 + 1.386294 = 1.673976
    # example 1: feature chosen 1 (+2 padding)     -> -ln(3/4)                               = 0.287682
    # batch mean = (1.673976 + 0.287682) / 2 = 0.980829
    student = torch.tensor([0.0, LN3]).expand(2, 3, 2).clone()
    teacher = torch.randn(2, 3, 2)
    chosen = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    fm = torch.tensor([[T, T, F], [T, F, F]])
    kd = rationale_kd(student, teacher, 1.0, fm, teacher_mask=chosen)
    assert kd.item() == approx(0.980829, abs=1e-6)
    # a one-hot target is the limit of a confident soft teacher: logits +-20 give the same value
    confident = torch.stack([20 * (1 - 2 * chosen), 20 * (2 * chosen - 1)], dim=-1)
    assert rationale_kd(student, confident, 1.0, fm).item() == approx(kd.item(), abs=1e-5)


def test_rationale_kd_direction_and_gradient():
    # KL is teacher || student: swapping the roles changes the value
    # KL([1/2, 1/2] || [1/4, 3/4]) = 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75) = 0.346574 - 0.202733 = 0.143841
    fm = torch.tensor([[T]])
    swapped = rationale_kd(torch.tensor([[[0.0, LN3]]]), torch.zeros(1, 1, 2), 1.0, fm)
    assert swapped.item() == approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3), abs=1e-6)
    # zero when the distributions agree; only the student gets a gradient
    teacher = torch.tensor([[[0.3, -0.2]]], requires_grad=True)
    student = torch.tensor([[[0.3, -0.2]]], requires_grad=True)
    kd = rationale_kd(student, teacher.detach(), 1.0, fm)
    assert kd.item() == approx(0.0, abs=1e-7)
    kd.backward()
    assert student.grad.abs().max().item() == approx(0.0, abs=1e-6)


# ---------------------------------------------------------------------------------------------
# prediction distillation KD_Y


def test_prediction_kd_soft_is_tau_squared_times_kl():
    # tau 2: teacher [0, 2 ln 3] / 2 -> [1/4, 3/4]; student [0, 0] -> [1/2, 1/2]; KL = 0.130812
    # second row: teacher = student = [0, 0] -> KL 0;  batch mean = 0.065406;  x tau^2 = 4 -> 0.261624
    student = torch.zeros(2, 2)
    teacher = torch.tensor([[0.0, 2 * LN3], [0.0, 0.0]])
    assert prediction_kd(student, teacher, 2.0).item() == approx(4 * KL_QUARTER / 2, abs=1e-6)
    assert prediction_kd(student, teacher, 2.0).item() == approx(0.261624, abs=1e-6)
    # tau 1: teacher [0, ln 3] -> same distributions, KL 0.130812, x 1
    assert prediction_kd(torch.zeros(1, 2), torch.tensor([[0.0, LN3]]), 1.0).item() == approx(KL_QUARTER, abs=1e-6)


def test_prediction_kd_hard_labels():
    # hard: target = one_hot(argmax teacher) = [0, 1]; student [0, 0] at tau 2 -> [1/2, 1/2]
    # KL([0, 1] || [1/2, 1/2]) = 1 * ln(1 / 0.5) = ln 2 = 0.693147 (0 log 0 = 0); x tau^2 = 4 -> 2.772589
    student = torch.zeros(1, 2)
    teacher = torch.tensor([[0.0, 0.01]])  # barely prefers class 1: the soft target would be ~[0.4988, 0.5012]
    assert prediction_kd(student, teacher, 2.0, hard=True).item() == approx(4 * math.log(2), abs=1e-6)
    assert prediction_kd(student, teacher, 2.0, hard=False).item() < 1e-4


# ---------------------------------------------------------------------------------------------
# schedules


def test_tau_staircase_every_100_steps():
    total = 1000
    # gamma = ln(5 / 0.1) / 1000 = ln 50 / 1000 = 0.003912023; tau(s) = 5 exp(-gamma s) = 5 * 50^(-s/1000)
    assert tau_at(0, total) == 5.0
    assert tau_at(99, total) == 5.0  # not updated before step 100
    # s = 100: 5 * 50^-0.1 = 5 * exp(-0.3912023) = 5 * 0.676243 = 3.381216
    assert tau_at(100, total) == approx(3.381216, abs=1e-6)
    assert tau_at(150, total) == tau_at(100, total)
    assert tau_at(199, total) == tau_at(100, total)
    # s = 500: 5 * 50^-0.5 = 5 / 7.071068 = 0.707107
    assert tau_at(500, total) == approx(0.707107, abs=1e-6)
    # step 999 uses s = 900: 5 * 50^-0.9 = 5 * exp(-3.520821) = 5 * 0.029575 = 0.147876
    assert tau_at(999, total) == approx(0.147876, abs=1e-6)
    # the end: 5 * 50^-1 = 0.1; after it the floor holds
    assert tau_at(1000, total) == approx(0.1)
    assert tau_at(5000, total) == TAU_MIN == 0.1


def test_tau_every_and_tau0_and_floor():
    # every 10: step 15 -> s = 10 -> 5 * 50^(-10/1000) = 5 * exp(-0.0391202) = 5 * 0.9616351 = 4.808175
    assert tau_at(15, 1000, every=10) == approx(4.808175, abs=1e-6)
    # tau0 = 2: gamma = ln(2 / 0.1) / 200 = ln 20 / 200; s = 100 -> 2 * 20^-0.5 = 0.447214
    assert tau_at(100, 200, tau0=2.0) == approx(2 / math.sqrt(20), abs=1e-6)
    # a short run with a staircase of 100 steps never updates tau
    assert tau_at(49, 50) == 5.0
    # no steps: tau0
    assert tau_at(0, 0) == 5.0
    # the floor is never crossed, whatever the step
    assert min(tau_at(s, 300, every=1) for s in range(0, 1000, 7)) == approx(0.1)


def test_alpha_schedule():
    # alpha = (tau0 - tau) / (tau0 - 0.1)
    assert alpha_at(5.0) == 0.0  # start: pure distillation
    assert alpha_at(0.1) == approx(1.0)  # end
    assert alpha_at(2.55) == approx(0.5)  # (5 - 2.55) / 4.9 = 2.45 / 4.9
    assert alpha_at(1.0, tau0=2.0) == approx(1.0 / 1.9)  # (2 - 1) / (2 - 0.1)
    # along the annealed tau of a run, alpha rises monotonically from 0 to 1
    alphas = [alpha_at(tau_at(s, 1000)) for s in range(0, 1001, 50)]
    assert alphas[0] == 0.0 and alphas[-1] == approx(1.0)
    assert all(a <= b for a, b in zip(alphas, alphas[1:]))


def test_gumbel_topk_mask_samples_exactly_k_with_a_straight_through_gradient():
    from rekd_core.losses import gumbel_topk_mask

    torch.manual_seed(0)
    logits = torch.randn(4, 10, 2, requires_grad=True)
    real = torch.ones(4, 10, dtype=torch.bool)
    real[1, 6:] = False  # a shorter example: round(0.3 x 6) = 2
    mask = gumbel_topk_mask(logits, real, 0.3, tau=0.5)
    assert mask.detach().sum(dim=1).tolist() == [3, 2, 3, 3] and not mask.detach()[1, 6:].any()
    assert set(mask.detach().unique().tolist()) <= {0.0, 1.0}
    (mask * torch.arange(10.0)).sum().backward()  # a loss that prefers the later features
    assert logits.grad is not None and logits.grad.abs().sum() > 0 and logits.grad[1, 6:].abs().sum() == 0
    # the draw follows the scores: a feature far ahead is always sampled, one far behind never
    strong = torch.zeros(200, 10, 2)
    strong[:, 0, 1], strong[:, 9, 0] = 20.0, 20.0
    sampled = gumbel_topk_mask(strong, torch.ones(200, 10, dtype=torch.bool), 0.2, tau=1.0)
    assert sampled[:, 0].sum() == 200 and sampled[:, 9].sum() == 0


def test_gumbel_topk_gradient_depends_only_on_how_the_scores_rank():
    """Raising every feature's score together changes neither the sample nor the gradient (it only moves
    the scores against the fixed count's boundary), so the scores cannot drift into a saturated sigmoid
    where the generator stops learning, as they did with a per-feature relaxation."""
    from rekd_core.losses import gumbel_topk_mask

    base = torch.randn(3, 12, 2)
    real = torch.ones(3, 12, dtype=torch.bool)
    weights = torch.randn(3, 12)
    grads = []
    for shift in (0.0, 15.0):
        logits = base.clone()
        logits[..., 1] += shift
        logits.requires_grad_(True)
        torch.manual_seed(1)
        mask = gumbel_topk_mask(logits, real, 0.25, tau=1.0)
        (mask * weights).sum().backward()
        grads.append((mask.detach(), logits.grad))
    assert torch.equal(grads[0][0], grads[1][0])
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-6) and grads[1][1].abs().sum() > 1e-3


def test_reverse_gradient_is_the_identity_forward_and_minus_scale_times_the_gradient_backward():
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = reverse_gradient(x, 0.5)
    assert torch.equal(y, x.detach())
    (y * torch.tensor([1.0, 2.0, 4.0])).sum().backward()  # d/dx = [1, 2, 4], reversed and halved
    assert x.grad.tolist() == [-0.5, -1.0, -2.0]
