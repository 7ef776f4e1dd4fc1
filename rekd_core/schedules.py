"""Gumbel temperature annealing and the REKD alpha schedule (METHOD.md)."""
from __future__ import annotations

import math

TAU_MIN = 0.1


def tau_at(step: int, total_steps: int, tau0: float = 5.0, tau_min: float = TAU_MIN, every: int = 100) -> float:
    """Temperature at optimizer step ``step``.

    tau decays exponentially from ``tau0`` to ``tau_min`` over ``total_steps`` and, as in the
    reference code, is only updated every ``every`` steps (a staircase):
    ``gamma = ln(tau0 / tau_min) / total_steps``, ``tau = max(tau0 * exp(-gamma * s), tau_min)``
    with ``s`` the last multiple of ``every`` not after ``step``.
    """
    if total_steps <= 0:
        return tau0
    gamma = math.log(tau0 / tau_min) / total_steps
    last_update = (step // every) * every
    return max(tau0 * math.exp(-gamma * last_update), tau_min)


def alpha_at(tau: float, tau0: float = 5.0, tau_min: float = TAU_MIN) -> float:
    """The scheduled alpha of the reference code: 0 at the start (pure distillation), 1 at the end."""
    return (tau0 - tau) / (tau0 - tau_min)
