"""One transition's shared-denoising tree (`sharing: s`): the keyframes' states and every
frame's, so that later frames can join between them (the rule is `sdmorph.core.sharing`).

Keys name the frames of the tree (indices for linear pacing, grid t's for even pacing); the
caller says where each key lies along t. States are kept in memory, on the engine's device,
only at the steps later levels join at: for 60 frames at 512x512 with PNDM (latents plus the
four noise predictions and a sample it keeps) about 60 x 3 x 6 x 64 KB = 70 MB.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Sequence

import torch
from PIL import Image

from sdmorph.core.errors import RenderError
from sdmorph.core.ids import ImageId
from sdmorph.core.sharing import Branch, cluster_refusal, join_step
from sdmorph.render.engine import Engine, FrameInput, Join, Snapshot
from sdmorph.render.renderer import Renderer


class SharedTree:
    """The states of one transition a -> b; `roots` first, then `grow` level by level."""

    def __init__(self, renderer: Renderer, a: ImageId, b: ImageId, where: Callable[[int], float],
                 keep: Collection[int]) -> None:
        check_engine(renderer)
        self.renderer, self.a, self.b, self.where = renderer, a, b, where
        self.keep = set(keep)
        self.states: dict[int, dict[int, Snapshot]] = {}
        self.levels: dict[int, int] = {}
        # What an unbroken render of the tree costs, counted whether a batch is rendered now
        # or skipped because its frames are on disk (so a resumed render records the same).
        self.unet_passes = 0
        self.vae_decodes = 0

    @property
    def sharing(self) -> float:
        return self.renderer.song.profile.sharing

    @functools.cached_property
    def iterations(self) -> int:
        """Denoising iterations of one frame (PNDM: steps + 1); asked once per tree, as the
        engine builds a scheduler to count them."""
        engine = self.renderer.engine
        assert isinstance(engine, Engine)
        return engine.iterations(self.renderer.song.profile.num_inference_steps)

    def roots(self, left: int, right: int, *, render: bool = True) -> None:
        """Denoise both keyframes' inputs in full, keeping their states (pictures unused:
        the transition's ends are the keyframe files); only count them if not `render`."""
        inputs = [self.renderer.frame_input(image, image, 0.0) for image in (self.a, self.b)]
        if not render:
            self._count(inputs, 0)
            return
        _, kept = self._render(inputs, None, 0)
        self.states[left], self.states[right] = kept
        self.levels[left] = self.levels[right] = 0

    def state_bytes(self) -> int:
        """Memory the kept states take (latents and the schedulers' per-frame tensors)."""
        total = 0
        for states in self.states.values():
            for snapshot in states.values():
                total += _nbytes(snapshot.latents)
                for value in vars(snapshot.scheduler).values():
                    for item in value if isinstance(value, list) else [value]:
                        if isinstance(item, torch.Tensor) and item.shape == snapshot.latents.shape:
                            total += _nbytes(item)
        return total

    def join_of(self, branch: Branch) -> int:
        return join_step(branch.level, self.sharing, self.iterations)

    def grow(self, batch: Sequence[Branch]) -> list[Image.Image]:
        """Render one batch of branches (one level, parents grown already)."""
        joins = []
        for branch in batch:
            step = self.join_of(branch)
            left, right = self.where(branch.left), self.where(branch.right)
            share = (self.where(branch.key) - left) / (right - left)
            joins.append(Join(self.states[branch.left][step], self.states[branch.right][step],
                              share))
        pictures, kept = self._render(self._inputs(batch), joins, joins[0].left.step)
        for branch, states in zip(batch, kept, strict=True):
            self.states[branch.key] = states
            self.levels[branch.key] = branch.level
        return pictures

    def record(self, frames: int) -> dict[str, object]:
        """What the tree counted so far, per frame of a transition of `frames` frames."""
        return {"join_steps": join_steps(self.sharing, self.iterations),
                "iterations": self.iterations,
                "unet_passes_per_frame": self.unet_passes / frames,
                "vae_decodes_per_frame": self.vae_decodes / frames}

    def count(self, batch: Sequence[Branch]) -> None:
        """Count a batch an unbroken render renders and this one skips (all on disk)."""
        self._count(self._inputs(batch), self.join_of(batch[0]))

    def _inputs(self, batch: Sequence[Branch]) -> list[FrameInput]:
        return [self.renderer.frame_input(self.a, self.b, self.where(br.key)) for br in batch]

    def _count(self, inputs: list[FrameInput], step: int) -> None:
        engine = self.renderer.engine
        assert isinstance(engine, Engine)
        self.unet_passes += engine.unet_passes(inputs, self.iterations - step)
        self.vae_decodes += len(inputs)

    def _render(self, inputs: list[FrameInput], joins: list[Join] | None,
                step: int) -> tuple[list[Image.Image], list[dict[int, Snapshot]]]:
        engine = self.renderer.engine
        assert isinstance(engine, Engine)
        self._count(inputs, step)
        p = self.renderer.song.profile
        return engine.render_shared(inputs, joins, self.keep, steps=p.num_inference_steps,
                                    width=self.renderer.width, height=self.renderer.height,
                                    control_start=p.control_guidance_start,
                                    control_end=p.control_guidance_end)


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def check_engine(renderer: Renderer) -> None:
    """Refuse shared denoising on a Ray cluster's engine (`sharing.cluster_refusal`)."""
    why = cluster_refusal(renderer.song.profile.sharing)
    if why and not isinstance(renderer.engine, Engine):
        raise RenderError(why)


def join_steps(sharing: float, iterations: int, levels: int = 3) -> dict[str, int]:
    """The join step of each level, as a manifest records them ("3" stands for 3 and up)."""
    return {str(level): join_step(level, sharing, iterations) for level in range(1, levels + 1)}
