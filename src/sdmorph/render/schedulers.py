"""Scheduler names a profile may give, and the diffusers schedulers they stand for.

A name is a short alias (`lcm`, `euler_a`, `dpm++_2m`, ... in `sources.SCHEDULER_ALIASES`) or a
diffusers class name. Each is built from the model's own scheduler configuration, so the
model's training schedule (betas, prediction type) carries over.
"""

from __future__ import annotations

import inspect
from typing import Any

import diffusers
from diffusers import SchedulerMixin

from sdmorph.core.errors import ModelError
from sdmorph.render.scheduler_names import SCHEDULER_ALIASES

COMMON_SCHEDULERS = (
    "PNDMScheduler",
    "DDIMScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "DPMSolverMultistepScheduler",
    "UniPCMultistepScheduler",
    "LMSDiscreteScheduler",
)


# Schedulers that add fresh noise at every step (the engine shares it between frames).
STOCHASTIC = {
    "EulerAncestralDiscreteScheduler", "KDPM2AncestralDiscreteScheduler", "LCMScheduler",
    "TCDScheduler", "DDPMScheduler",
}
# TCD's noise strength ("gamma"): diffusers pipelines pass eta=0, which makes TCD deterministic
# and soft; 0.3 is what TCD's authors recommend for four steps.
STEP_ETA = {"TCDScheduler": 0.3}


def scheduler_names() -> list[str]:
    """The short names, for help texts and error lines."""
    return list(SCHEDULER_ALIASES)


def make_scheduler(name: str | None, base: SchedulerMixin,
                   timestep_spacing: str | None = None) -> SchedulerMixin:
    """The scheduler `name` (None: `base`'s own kind) built from `base`'s configuration."""
    cls: type[SchedulerMixin] = type(base)
    changes: dict[str, Any] = {}
    if name:
        alias = SCHEDULER_ALIASES.get(name.strip().lower())
        cls = scheduler_class(alias[0] if alias else name)
        changes = dict(alias[1]) if alias else {}
    if timestep_spacing:
        changes["timestep_spacing"] = timestep_spacing
    if not name and not changes:
        return base
    # Only the settings the new class takes: diffusers warns about the others (a PNDM config's
    # skip_prk_steps given to LCM) and keeps them, so every later copy would warn again.
    accepted = inspect.signature(cls.__init__).parameters
    config = {k: v for k, v in base.config.items() if k in accepted}
    return cls.from_config({**config, **changes})


def scheduler_options(name: str | None, timestep_spacing: str | None,
                      scheduler: SchedulerMixin) -> dict[str, Any]:
    """What a profile changed beyond the scheduler's class (part of the recipe: a class name
    alone does not tell dpm++_2m from dpm++_2m_karras), and the step eta when not 0.
    Empty for a profile that names no scheduler, so older recipes keep their keys."""
    alias = SCHEDULER_ALIASES.get(name.strip().lower()) if name else None
    changed: dict[str, Any] = dict(alias[1]) if alias else {}
    if timestep_spacing:
        changed["timestep_spacing"] = timestep_spacing
    eta = STEP_ETA.get(type(scheduler).__name__)
    if eta:
        changed["eta"] = eta
    return changed


def is_stochastic(scheduler: SchedulerMixin) -> bool:
    """Whether `scheduler.step` draws fresh noise (ancestral, LCM, TCD, SDE solvers)."""
    if type(scheduler).__name__ in STOCHASTIC:
        return True
    return str(scheduler.config.get("algorithm_type", "")).startswith("sde")


def scheduler_class(name: str) -> type[SchedulerMixin]:
    """The diffusers scheduler class called `name` (case-insensitive), or an alias's class."""
    alias = SCHEDULER_ALIASES.get(name.strip().lower())
    wanted = (alias[0] if alias else name).strip().lower()
    for attr in dir(diffusers):
        if attr.lower() != wanted:
            continue
        cls = getattr(diffusers, attr, None)
        if isinstance(cls, type) and issubclass(cls, SchedulerMixin):
            return cls
    raise ModelError(
        f"scheduler '{name}': not a diffusers scheduler; use one of "
        + ", ".join(SCHEDULER_ALIASES) + " or a class name such as "
        + ", ".join(COMMON_SCHEDULERS)
    )
