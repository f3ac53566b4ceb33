"""`render-prompts`: every (prompt, seed) keyframe image of the song, resumable.

On a Ray cluster (`Renderer.parallel` workers) that many batches render at once; they are
written in the same order, from the same batches, as by a local run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

from PIL import Image

from sdmorph.core.errors import RenderError, SdmorphError
from sdmorph.core.ids import ImageId
from sdmorph.formats.fsio import clean_temp_files
from sdmorph.media.store import png_complete
from sdmorph.render.engine import DarkFrameError
from sdmorph.render.renderer import FrameWriter, Renderer, png_info


@dataclass
class KeyframeReport:
    rendered: list[ImageId] = field(default_factory=list)
    skipped: list[ImageId] = field(default_factory=list)
    stale: list[ImageId] = field(default_factory=list)
    seconds: float = 0.0


def chunks(renderer: Renderer, todo: Sequence[ImageId], size: int) -> list[list[ImageId]]:
    """Fixed batches over each prompt's seed list, sheet order, that hold something to do.

    Pixels can differ in the last bit with the batch a frame was computed in, so batches
    never depend on what is already on disk: a resumed run renders the very same images.
    """
    wanted = set(todo)
    out: list[list[ImageId]] = []
    for prompt in dict.fromkeys(image.prompt for image in todo):
        seeds = list(renderer.song.prompts[prompt].seeds)
        seeds += [i.seed for i in todo if i.prompt == prompt and i.seed not in seeds]
        batches = [seeds[i : i + size] for i in range(0, len(seeds), size)]
        out += [[ImageId(prompt, s) for s in batch] for batch in batches
                if wanted & {ImageId(prompt, s) for s in batch}]
    return out


def select_images(renderer: Renderer, only: Sequence[str] | None) -> list[ImageId]:
    song = renderer.song
    unknown = [name for name in only or () if name not in song.prompts]
    if unknown:
        raise SdmorphError(f"--only {unknown[0]!r}: no such prompt in {song.sheet_path} "
                           f"(prompts: {', '.join(song.prompts)})")
    return [image for image in song.all_images() if not only or image.prompt in only]


def state_of(renderer: Renderer, image: ImageId) -> str:
    """'missing', 'current', 'legacy' (the old scripts', used as is) or 'stale'."""
    if not png_complete(renderer.song.keyframe_path(image)):
        return "missing"
    return renderer.keyframe_state(image)


def render_keyframes(
    renderer: Renderer,
    images: Sequence[ImageId],
    *,
    force: bool = False,
    batch_size: int = 4,
    on_image: Callable[[int], None] | None = None,
) -> KeyframeReport:
    """Render the images that are missing (or all with `force`) into prompt_images/."""
    started = time.perf_counter()
    report = KeyframeReport()
    clean_temp_files(renderer.song.media_dir / "prompt_images")
    states = {image: state_of(renderer, image) for image in images}
    todo = [image for image in images if force or states[image] == "missing"]
    report.stale = [image for image in images if states[image] == "stale" and not force]
    report.skipped = [image for image in images if image not in set(todo)]
    if on_image and report.skipped:
        on_image(len(report.skipped))
    wanted = set(todo)
    batches = chunks(renderer, todo, batch_size)
    with FrameWriter() as writer, _rendered(renderer, batches) as results:
        for batch, result in zip(batches, results, strict=True):
            try:
                pictures = result()
            except DarkFrameError as exc:
                raise RenderError(f"keyframe {batch[exc.position].stem} came out {exc.what}; "
                                  f"{exc.hint}") from None
            for image, picture in zip(batch, pictures, strict=True):
                if image not in wanted:
                    continue
                writer.put(renderer.song.keyframe_path(image), picture,
                           png_info(renderer.png_text(image)))
                report.rendered.append(image)
                if on_image:
                    on_image(1)
    report.seconds = time.perf_counter() - started
    return report


@contextmanager
def _rendered(renderer: Renderer, batches: list[list[ImageId]]
              ) -> Iterator[Iterator[Callable[[], list[Image.Image]]]]:
    """Each batch's pictures, in order, as calls that render it (or wait for it): one batch
    at a time, or on a cluster as many at once as it has workers."""
    workers = min(renderer.parallel, len(batches))
    if workers <= 1:
        yield (lambda batch=batch: renderer.render_keyframes(batch) for batch in batches)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="sdmorph-keyframes") as pool:
        futures = [pool.submit(renderer.render_keyframes, batch) for batch in batches]
        try:
            yield (future.result for future in futures)
        finally:  # stopped by an error: batches not started yet are not rendered
            for future in futures:
                future.cancel()
