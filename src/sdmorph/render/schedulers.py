"""Scheduler names a profile may give, and the diffusers classes they stand for."""

from __future__ import annotations

import diffusers
from diffusers import SchedulerMixin

from sdmorph.core.errors import ModelError

COMMON_SCHEDULERS = (
    "PNDMScheduler",
    "DDIMScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "DPMSolverMultistepScheduler",
    "UniPCMultistepScheduler",
    "LMSDiscreteScheduler",
)


def scheduler_class(name: str) -> type[SchedulerMixin]:
    """The diffusers scheduler class called `name` (case-insensitive)."""
    wanted = name.strip().lower()
    for attr in dir(diffusers):
        if attr.lower() != wanted:
            continue
        cls = getattr(diffusers, attr, None)
        if isinstance(cls, type) and issubclass(cls, SchedulerMixin):
            return cls
    raise ModelError(
        f"scheduler '{name}': not a diffusers scheduler; valid names include "
        + ", ".join(COMMON_SCHEDULERS)
    )
