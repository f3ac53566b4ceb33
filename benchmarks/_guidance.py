"""Guidance on the trained built-in `tiny` (issue 21): how often its pictures follow the words
at guidance 1 to 7.5, with the model's own PNDM and with other schedulers.

The evaluation prompts x seeds of `sdmorph.media.caption_match` (10 x 4), 64x64, 20 steps,
through `load_pipeline("tiny")` with each scheduler built by sdmorph's `make_scheduler` (as a
profile's `scheduler` builds it); judged by `follows_words` (object colour, background).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SCHEDULERS = ("pndm", "ddim", "dpm++_2m", "euler")
GUIDANCES = (1.0, 2.0, 4.0, 7.5)
STEPS = 20


@dataclass(frozen=True)
class Score:
    scheduler: str
    guidance: float
    colour: float  # share of pictures whose object takes the colour named
    background: float  # share whose background shows the setting named

    @property
    def total(self) -> float:
        return self.colour + self.background


def sweep(log: Callable[[str], None] = print) -> list[Score]:
    import torch

    from sdmorph.media.caption_match import EVALUATION_PROMPTS, EVALUATION_SEEDS, follows_words
    from sdmorph.render.pipelines import load_pipeline
    from sdmorph.render.schedulers import make_scheduler

    pipe = load_pipeline("tiny")
    base = pipe.scheduler
    prompts = [p for p in EVALUATION_PROMPTS for _ in EVALUATION_SEEDS]
    seeds = [s for _ in EVALUATION_PROMPTS for s in EVALUATION_SEEDS]
    out = []
    for name in SCHEDULERS:
        pipe.scheduler = make_scheduler(name, base)
        for g in GUIDANCES:
            images = pipe(prompts, num_inference_steps=STEPS, guidance_scale=g, output_type="np",
                          generator=[torch.Generator().manual_seed(s) for s in seeds]).images
            pictures = [(i * 255).round().astype(np.uint8) for i in images]
            score = Score(name, g, *follows_words(pictures, prompts))
            log(f"{name}, guidance {g:g}: object colour {score.colour:.3f}, background "
                f"{score.background:.3f}")
            out.append(score)
    return out
