"""Schedules: values the training plan evaluates each step (KL weight, capacity, temperature).

A schedule is a frozen dataclass called with the global optimisation step. It is saved as a
dict with its ``kind`` so a run's config.json says exactly what was used.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Constant:
    """The same value at every step."""

    value: float

    def __call__(self, step: int) -> float:
        return float(self.value)


@dataclass(frozen=True)
class Linear:
    """``start`` until ``delay`` steps, then a straight line to ``end`` over ``steps`` steps.

    KL warm-up is Linear(0, 1, steps); a capacity C(t) (Burgess et al. 2018) is
    Linear(0, c_max, steps).
    """

    start: float
    end: float
    steps: int
    delay: int = 0

    def __call__(self, step: int) -> float:
        if self.steps <= 0:
            return float(self.end)
        t = min(max(step - self.delay, 0) / self.steps, 1.0)
        return float(self.start + t * (self.end - self.start))


@dataclass(frozen=True)
class Exponential:
    """Geometric decay from ``start`` to ``end`` over ``steps`` steps, then constant.

    Suits a Gumbel-softmax temperature annealed from 1.0 to 0.5.
    """

    start: float
    end: float
    steps: int

    def __call__(self, step: int) -> float:
        if self.steps <= 0:
            return float(self.end)
        t = min(step / self.steps, 1.0)
        return float(math.exp(math.log(self.start) + t * (math.log(self.end) - math.log(self.start))))


Schedule = Constant | Linear | Exponential
_KINDS: dict[str, type] = {"constant": Constant, "linear": Linear, "exponential": Exponential}


def check_schedule_names(schedules: Mapping[str, object], module: object) -> None:
    """Refuse a schedule the module would not read (a misspelt name would be ignored silently).

    ``module`` declares the names its ``forward(batch, knobs)`` reads as ``schedule_names``.
    """
    if not schedules:
        return
    allowed = getattr(module, "schedule_names", None)
    name = type(module).__name__
    if allowed is None:
        raise TypeError(f"{name} declares no schedule_names, so schedules {sorted(schedules)} "
                        "cannot be checked; give it a class attribute schedule_names listing "
                        "the knobs its forward reads")
    unknown = sorted(set(schedules) - set(allowed))
    if unknown:
        raise ValueError(f"unknown schedule name(s) {unknown} for {name}; "
                         f"allowed: {sorted(allowed)}")


def schedule_to_dict(schedule: Schedule) -> dict[str, Any]:
    kind = {cls: name for name, cls in _KINDS.items()}[type(schedule)]
    return {"kind": kind, **dataclasses.asdict(schedule)}


def schedule_from_dict(values: dict[str, Any] | float) -> Schedule:
    """Inverse of ``schedule_to_dict``; a bare number is a Constant."""
    if isinstance(values, int | float):
        return Constant(float(values))
    values = dict(values)
    kind = values.pop("kind", None)
    if kind not in _KINDS:
        raise ValueError(f"schedule kind must be one of {sorted(_KINDS)}, got {kind!r}")
    result: Schedule = _KINDS[kind](**values)
    return result
