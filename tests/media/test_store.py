"""The transition store: legacy and sdmorph folders, the frame check cache, locks."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from sdmorph.core.errors import RenderError, SdmorphError
from sdmorph.core.ids import ImageId, transition_name
from sdmorph.formats.fsio import MAX_NAME_BYTES
from sdmorph.formats.legacy import frame_name
from sdmorph.formats.recipe import recipe_key
from sdmorph.media import store as store_module
from sdmorph.media.store import (
    FRAMECHECK_PATH,
    MANIFEST_NAME,
    PARTIAL_NAME,
    Found,
    TransitionManifest,
    TransitionStore,
    png_complete,
    png_decodes,
)

N = 6
SEEDS = {
    "luna": [5842234013956479, 1000],
    "sun": [12, 7771234],
    "cloud goddess": [4440123, 4440999, 1234567],
    "star-child": [1234, 98765],
}
LUNA = ImageId("luna", 5842234013956479)
SUN = ImageId("sun", 7771234)
SUN12 = ImageId("sun", 12)
STAR = ImageId("star-child", 1234)
GODDESS = ImageId("cloud goddess", 1234567)
RECIPE = {"model": "tiny-random", "size": [64, 64], "steps": 4, "noise": "cpu", "guidance": 7.5}


def png_bytes(shade: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (shade % 256, 40, 90)).save(buf, format="PNG")
    return buf.getvalue()


def make_frames(folder: Path, n: int = N, data: bytes | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / frame_name(i)).write_bytes(data if data is not None else png_bytes(i))
    return folder


@pytest.fixture
def media(tmp_path: Path) -> Path:
    return tmp_path / "song"


@pytest.fixture
def store(media: Path) -> TransitionStore:
    return TransitionStore(media, SEEDS, expected_frames=N)


def tdir(media: Path, name: str) -> Path:
    return media / "transition_images" / name


def by_name(store: TransitionStore, key: str | None = None) -> dict:
    return {info.name: info for info in store.scan(key)}


def manifest_for(a: ImageId, b: ImageId, recipe: dict | None = None) -> TransitionManifest:
    return TransitionManifest(from_image=a, to_image=b, recipe=recipe or RECIPE, frames=N)


def render(store: TransitionStore, a: ImageId, b: ImageId, recipe: dict | None = None) -> Path:
    folder = store.folder_for(a, b)
    manifest = manifest_for(a, b, recipe)
    store.begin(folder, manifest)
    for i in store.missing_frames(folder, N):
        store.frame_path(folder, i).write_bytes(png_bytes(i))
    store.finish(folder, manifest)
    return folder


# ----- PNG completeness -------------------------------------------------------------------


def test_png_complete_detects_truncation_and_junk(tmp_path: Path) -> None:
    good = png_bytes()
    cases = {
        "good.png": good,
        "cut.png": good[:-5],
        "half.png": good[: len(good) // 2],
        "zero_tail.png": good[:-12] + b"\0" * 12,
        "empty.png": b"",
        "jpeg.png": b"\xff\xd8\xff" + good[3:],
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    assert {n: png_complete(tmp_path / n) for n in cases} == {
        "good.png": True,
        "cut.png": False,
        "half.png": False,
        "zero_tail.png": False,
        "empty.png": False,
        "jpeg.png": False,
    }
    assert not png_complete(tmp_path / "missing.png")


def noise_png(size: int = 32) -> bytes:
    """A PNG whose pixel data fills most of the file (noise does not compress)."""
    pixels = bytes((i * 7919 + i // 3) % 251 for i in range(size * size * 3))
    buf = io.BytesIO()
    Image.frombytes("RGB", (size, size), pixels).save(buf, format="PNG")
    return buf.getvalue()


def zeroed_middle(data: bytes) -> bytes:
    """Signature and IEND intact, the middle third zeroed (a damaged cloud download)."""
    third = len(data) // 3
    return data[:third] + b"\0" * third + data[2 * third :]


def test_png_decodes_catches_a_zeroed_middle(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    good.write_bytes(noise_png())
    bad.write_bytes(zeroed_middle(noise_png()))
    assert png_complete(bad)  # head and tail look whole: only decoding tells
    assert png_decodes(good) and not png_decodes(bad)
    bad.write_bytes(noise_png()[:-5])
    assert not png_decodes(bad)
    assert not png_decodes(tmp_path / "missing.png")


# ----- legacy folders ---------------------------------------------------------------------


def test_legacy_folder_with_prefixes_is_complete(store: TransitionStore, media: Path) -> None:
    make_frames(tdir(media, "luna-5842 to sun-7771"))
    (info,) = store.scan()
    assert (info.kind, info.state, info.frames_found) == ("legacy", "complete", N)
    assert (info.a, info.b) == (LUNA, SUN)


def test_legacy_names_with_spaces_and_hyphens(store: TransitionStore, media: Path) -> None:
    make_frames(tdir(media, "cloud goddess-1234 to star-child-1234"))
    (info,) = store.scan()
    assert (info.a, info.b, info.state) == (GODDESS, STAR, "complete")


def test_duplicates_and_junk_files_are_ignored(store: TransitionStore, media: Path) -> None:
    folder = make_frames(tdir(media, "luna-5842 to sun-12"))
    (folder / "frame000003 (1).png").write_bytes(png_bytes()[:10])
    (folder / ".DS_Store").write_bytes(b"junk")
    (folder / "Thumbs.db").write_bytes(b"junk")
    (info,) = store.scan()
    assert (info.state, info.frames_found, info.b) == ("complete", N, SUN12)


def test_truncated_frame_makes_the_folder_incomplete(store: TransitionStore, media: Path) -> None:
    folder = make_frames(tdir(media, "luna-5842 to sun-12"))
    (folder / frame_name(3)).write_bytes(png_bytes(3)[:40])
    (info,) = store.scan()
    assert info.state == "incomplete"
    assert "frame000003.png" in info.reason and "1 of 6" in info.reason
    assert store.find(LUNA, SUN12) is None


def test_undecodable_frame_makes_the_folder_incomplete_and_is_cached(
    store: TransitionStore, media: Path
) -> None:
    folder = make_frames(tdir(media, "luna-5842 to sun-12"), data=noise_png())
    assert store.scan()[0].state == "complete"
    frame = folder / frame_name(4)
    frame.write_bytes(zeroed_middle(noise_png()))
    (info,) = store.scan()
    assert info.state == "incomplete"
    assert "frame000004.png" in info.reason and "do not decode" in info.reason
    assert store.find(LUNA, SUN12) is None
    # The verdict is cached by (size, mtime_ns, ctime_ns) ...
    st = frame.stat()
    cached = json.loads((media / FRAMECHECK_PATH).read_text())["folders"][folder.name]
    assert cached[frame.name] == [st.st_size, st.st_mtime_ns, st.st_ctime_ns, 0]
    # ... so a good copy put back with the same size and mtime (`cp -p`, `rsync -a`) is
    # checked again: writing it changed its ctime.
    time.sleep(0.01)
    frame.write_bytes(noise_png())
    os.utime(frame, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert frame.stat().st_mtime_ns == st.st_mtime_ns
    assert TransitionStore(media, SEEDS, N).scan()[0].state == "complete"


def test_cache_of_the_old_version_is_checked_again(store: TransitionStore, media: Path) -> None:
    # Version 1 vouched for frames by their head and tail bytes alone.
    folder = make_frames(tdir(media, "luna-5842 to sun-12"), data=zeroed_middle(noise_png()))
    entries = {f.name: [f.stat().st_size, f.stat().st_mtime_ns, 1] for f in folder.iterdir()}
    (media / FRAMECHECK_PATH).parent.mkdir(parents=True)
    (media / FRAMECHECK_PATH).write_text(
        json.dumps({"version": 1, "folders": {folder.name: entries}}))
    assert store.scan()[0].state == "incomplete"


@pytest.mark.parametrize(
    ("frames", "expected_reason"),
    [
        (range(N - 1), f"{N - 1} frames, expected {N}, first missing frame000005.png"),
        (range(N + 1), f"{N + 1} frames, expected {N}"),
        ([0, 1, 2, 4, 5, 6], f"{N} frames, expected {N}, first missing frame000003.png"),
        ([], f"0 frames, expected {N}, first missing frame000000.png"),
    ],
)
def test_wrong_frame_count_is_incomplete(
    store: TransitionStore, media: Path, frames: object, expected_reason: str
) -> None:
    folder = tdir(media, "luna-5842 to sun-12")
    folder.mkdir(parents=True)
    for i in frames:  # type: ignore[attr-defined]
        (folder / frame_name(i)).write_bytes(png_bytes(i))
    (info,) = store.scan()
    assert info.state == "incomplete"
    assert info.reason == expected_reason


def test_junk_folders_are_unparseable_and_not_descended(
    store: TransitionStore, media: Path
) -> None:
    # A good-looking transition parked inside wrong_num_images/ must not be picked up.
    make_frames(tdir(media, "wrong_num_images") / "luna-5842 to sun-12")
    make_frames(tdir(media, "TI_bad") / "luna-5842 to sun-7771")
    (media / "transition_images" / "notes.txt").write_text("not a folder")
    infos = by_name(store)
    assert set(infos) == {"wrong_num_images", "TI_bad"}
    assert {i.state for i in infos.values()} == {"unparseable"}
    assert infos["TI_bad"].reason == "not a transition folder name"
    assert store.find(LUNA, SUN12) is None


def test_unknown_and_ambiguous_names(store: TransitionStore, media: Path) -> None:
    make_frames(tdir(media, "mars-1234 to sun-12"))
    make_frames(tdir(media, "luna-9999 to sun-12"))
    make_frames(tdir(media, "cloud goddess-4440 to sun-12"))
    infos = by_name(store)
    assert infos["mars-1234 to sun-12"].state == "unparseable"
    assert "unknown prompt 'mars'" in infos["mars-1234 to sun-12"].reason
    assert "unknown seed 9999" in infos["luna-9999 to sun-12"].reason
    ambiguous = infos["cloud goddess-4440 to sun-12"]
    assert ambiguous.state == "ambiguous"
    assert "4440123" in ambiguous.reason and "4440999" in ambiguous.reason
    assert ambiguous.a is None and ambiguous.frames_found == N


def test_missing_store_scans_empty(store: TransitionStore) -> None:
    assert store.scan() == []
    assert store.find(LUNA, SUN) is None


# ----- find -------------------------------------------------------------------------------


def test_find_both_directions(store: TransitionStore, media: Path) -> None:
    folder = make_frames(tdir(media, "luna-5842 to sun-7771"))
    assert store.find(LUNA, SUN) == Found(folder, False, "legacy")
    assert store.find(SUN, LUNA) == Found(folder, True, "legacy")
    assert store.find(LUNA, SUN12) is None


def test_find_prefers_the_forward_folder(store: TransitionStore, media: Path) -> None:
    make_frames(tdir(media, "sun-7771 to luna-5842"))
    forward = make_frames(tdir(media, "luna-5842 to sun-7771"))
    assert store.find(LUNA, SUN) == Found(forward, False, "legacy")


def test_find_prefers_sdmorph_over_legacy_in_one_direction(
    store: TransitionStore, media: Path
) -> None:
    make_frames(tdir(media, "luna-5842 to sun-7771"))
    ours = render(store, LUNA, SUN)
    key = recipe_key(RECIPE)
    assert store.find(LUNA, SUN, key) == Found(ours, False, "sdmorph")
    # With another recipe wanted, ours is stale and the legacy folder still serves.
    found = store.find(LUNA, SUN, recipe_key({"model": "other"}))
    assert found is not None and found.kind == "legacy"


# ----- sdmorph folders --------------------------------------------------------------------


def test_recipe_key_is_stable_and_canonical() -> None:
    key = recipe_key({"a": 1, "b": [1.5, "x"]})
    assert key == recipe_key({"b": [1.5, "x"], "a": 1})
    assert key != recipe_key({"a": 1, "b": [1.5, "y"]})
    assert key == hashlib.sha256(b'{"a":1,"b":[1.5,"x"]}').hexdigest()
    manifest = manifest_for(LUNA, SUN)
    assert manifest.recipe_key == recipe_key(RECIPE)


def test_manifest_round_trips_with_full_seeds(tmp_path: Path) -> None:
    manifest = manifest_for(LUNA, SUN)
    manifest.write(tmp_path / "m.json")
    raw = json.loads((tmp_path / "m.json").read_text())
    assert raw["from_image"] == {"prompt": "luna", "seed": 5842234013956479}
    assert raw["recipe_key"] == manifest.recipe_key
    assert TransitionManifest.read(tmp_path / "m.json") == manifest


def test_sdmorph_render_lifecycle(store: TransitionStore, media: Path) -> None:
    folder = store.folder_for(LUNA, SUN)
    assert folder == tdir(media, "luna-5842234013956479 to sun-7771234")
    manifest = manifest_for(LUNA, SUN)
    store.begin(folder, manifest)
    (info,) = store.scan()
    assert (info.kind, info.state, info.a, info.b) == ("sdmorph", "in-progress", LUNA, SUN)
    assert store.missing_frames(folder, N) == list(range(N))
    for i in (0, 1):
        store.frame_path(folder, i).write_bytes(png_bytes(i))
    assert store.missing_frames(folder, N) == [2, 3, 4, 5]
    assert by_name(store)[folder.name].reason == f"unfinished render: 2 of {N} frames"
    with pytest.raises(RenderError, match="4 frames missing"):
        store.finish(folder, manifest)
    for i in store.missing_frames(folder, N):
        store.frame_path(folder, i).write_bytes(png_bytes(i))
    store.finish(folder, manifest)
    assert not (folder / PARTIAL_NAME).exists()
    assert TransitionManifest.read(folder / MANIFEST_NAME).complete
    (info,) = store.scan(recipe_key(RECIPE))
    assert info.state == "complete"
    assert store.find(SUN, LUNA, recipe_key(RECIPE)) == Found(folder, True, "sdmorph")


def test_stale_manifest(store: TransitionStore, media: Path) -> None:
    folder = render(store, LUNA, SUN)
    assert by_name(store, recipe_key(RECIPE))[folder.name].state == "complete"
    other = recipe_key({**RECIPE, "steps": 30})
    info = by_name(store, other)[folder.name]
    assert info.state == "stale"
    assert store.find(LUNA, SUN, other) is None
    # Without a current recipe to compare with, nothing is stale.
    assert store.find(LUNA, SUN) == Found(folder, False, "sdmorph")


def test_manifest_with_another_frame_count_is_stale(media: Path) -> None:
    render(TransitionStore(media, SEEDS, N), LUNA, SUN)
    (info,) = TransitionStore(media, SEEDS, N + 4).scan()
    assert info.state == "stale" and "song now wants" in info.reason


def test_manifest_whose_frames_vanished_is_incomplete(store: TransitionStore) -> None:
    folder = render(store, LUNA, SUN)
    store.frame_path(folder, 2).unlink()
    (info,) = store.scan()
    assert info.state == "incomplete" and "frame000002.png" in info.reason


def test_damaged_manifest_is_unparseable(store: TransitionStore, media: Path) -> None:
    folder = make_frames(tdir(media, "luna-5842 to sun-7771"))
    (folder / MANIFEST_NAME).write_text("{not json")
    (info,) = store.scan()
    assert info.state == "unparseable" and "manifest.json is unreadable" in info.reason
    assert store.find(LUNA, SUN) is None
    (folder / MANIFEST_NAME).write_text('{"to_image": {"prompt": "sun", "seed": 1}, "frames": 6}')
    (info,) = store.scan()
    assert info.state == "unparseable" and "from_image" in info.reason


def test_damaged_partial_marker_is_unparseable(store: TransitionStore, media: Path) -> None:
    folder = make_frames(tdir(media, "luna-5842 to sun-7771"))
    (folder / PARTIAL_NAME).write_text("")
    (info,) = store.scan()
    assert (info.kind, info.state) == ("sdmorph", "unparseable")
    assert store.folder_for(LUNA, SUN) != folder  # not ours to write into either


def test_read_only_media_folder_still_scans(store: TransitionStore, media: Path) -> None:
    make_frames(tdir(media, "luna-5842 to sun-7771"))
    (media / FRAMECHECK_PATH).parent.mkdir(parents=True)
    (media / FRAMECHECK_PATH).mkdir()  # where the cache file should go: cannot be written
    assert [i.state for i in store.scan()] == ["complete"]


def test_rerender_with_another_recipe_drops_old_frames(store: TransitionStore) -> None:
    folder = render(store, LUNA, SUN)
    store.begin(folder, manifest_for(LUNA, SUN, {"model": "new"}))
    assert not (folder / MANIFEST_NAME).exists()
    assert store.missing_frames(folder, N) == list(range(N))


def test_resume_with_the_same_recipe_keeps_frames(store: TransitionStore) -> None:
    folder = store.folder_for(LUNA, SUN)
    store.begin(folder, manifest_for(LUNA, SUN))
    store.frame_path(folder, 0).write_bytes(png_bytes())
    store.begin(folder, manifest_for(LUNA, SUN))  # a second run picks the render up
    assert store.missing_frames(folder, N) == list(range(1, N))


def test_missing_frames_counts_truncated_and_removes_temp_files(
    store: TransitionStore,
) -> None:
    folder = store.folder_for(LUNA, SUN)
    store.begin(folder, manifest_for(LUNA, SUN))
    make_frames(folder)
    store.frame_path(folder, 4).write_bytes(png_bytes()[:30])
    temp = folder / ".frame000005.png.abc.sdmorph-tmp.png"
    temp.write_bytes(b"partial")
    assert store.missing_frames(folder, N) == [4]
    assert not temp.exists()


# ----- folder_for -------------------------------------------------------------------------


def test_folder_for_never_returns_a_legacy_folder(store: TransitionStore, media: Path) -> None:
    # 4-digit seeds: the legacy name and sdmorph's full name are the same string.
    legacy = make_frames(tdir(media, "star-child-1234 to sun-12"))
    before = {p.name: p.read_bytes() for p in legacy.iterdir()}
    folder = store.folder_for(STAR, SUN12)
    assert folder == tdir(media, "star-child-1234 to sun-12 (sdmorph)")
    with pytest.raises(RenderError, match="refusing to write"):
        store.begin(legacy, manifest_for(STAR, SUN12))
    render(store, STAR, SUN12)
    assert {p.name: p.read_bytes() for p in legacy.iterdir()} == before
    assert store.folder_for(STAR, SUN12) == folder  # found again, to resume or reuse


def test_folder_for_reuses_its_suffixed_folder_after_legacy_one_goes(
    store: TransitionStore, media: Path
) -> None:
    legacy = make_frames(tdir(media, "star-child-1234 to sun-12"))
    ours = store.folder_for(STAR, SUN12)
    store.begin(ours, manifest_for(STAR, SUN12))
    for frame in legacy.iterdir():
        frame.unlink()
    legacy.rmdir()
    assert store.folder_for(STAR, SUN12) == ours


def test_folder_for_takes_an_empty_folder(store: TransitionStore, media: Path) -> None:
    empty = tdir(media, transition_name(LUNA, SUN))
    empty.mkdir(parents=True)
    assert store.folder_for(LUNA, SUN) == empty


def test_folder_for_shortens_long_names_uniquely(media: Path) -> None:
    long_a, long_b = "a" * 150 + " one", "a" * 150 + " two"
    sheet = {long_a: [1], long_b: [1], "sun": [12]}
    store = TransitionStore(media, sheet, N)
    first = store.folder_for(ImageId(long_a, 1), SUN12)
    second = store.folder_for(ImageId(long_b, 1), SUN12)
    assert first != second
    for folder in (first, second):
        assert len(folder.name.encode()) <= MAX_NAME_BYTES
        assert folder.parent == media / "transition_images"
    render(store, ImageId(long_a, 1), SUN12)
    (info,) = store.scan()
    assert (info.a, info.b, info.state) == (ImageId(long_a, 1), SUN12, "complete")


def test_folder_for_keeps_user_names_inside_the_store(media: Path) -> None:
    evil = ImageId("../../etc/passwd", 1)
    sneaky = ImageId("..", 2)
    store = TransitionStore(media, {evil.prompt: [1], "..": [2]}, N)
    for a, b in ((evil, sneaky), (sneaky, evil)):
        folder = store.folder_for(a, b)
        assert folder.parent == media / "transition_images"
        assert "/" not in folder.name and folder.name not in (".", "..")


def test_folder_for_skips_another_pairs_sdmorph_folder(media: Path) -> None:
    # "a:b" and "a_b" map to the same safe name; each pair still gets its own folder.
    store = TransitionStore(media, {"a:b": [1], "a_b": [1], "sun": [12]}, N)
    first = render(store, ImageId("a:b", 1), SUN12)
    second = store.folder_for(ImageId("a_b", 1), SUN12)
    assert second != first
    assert store.folder_for(ImageId("a:b", 1), SUN12) == first


# ----- write_legacy_manifest --------------------------------------------------------------


def test_write_legacy_manifest_leaves_frames_untouched(store: TransitionStore, media: Path) -> None:
    folder = make_frames(tdir(media, "luna-5842 to sun-7771"))
    stats = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}
    (info,) = store.scan()
    target = store.write_legacy_manifest(info, recipe={"noise": "cuda"})
    assert target == folder / MANIFEST_NAME
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}
    assert after.pop(MANIFEST_NAME)
    assert after == stats
    manifest = TransitionManifest.read(target)
    assert (manifest.kind, manifest.complete, manifest.frames) == ("legacy", True, N)
    assert manifest.pair == (LUNA, SUN)
    # Read back from the manifest: complete legacy, not stale whatever the recipe, and
    # no frame is decoded again (a frame damaged afterwards goes unnoticed by design).
    (folder / frame_name(2)).write_bytes(png_bytes()[:20])
    (info,) = store.scan(recipe_key({"model": "any"}))
    assert (info.kind, info.state, info.a, info.b) == ("legacy", "complete", LUNA, SUN)
    assert store.find(SUN, LUNA, "whatever") == Found(folder, True, "legacy")
    # Adopted folders survive a sheet that no longer resolves the 4-digit name.
    (info,) = TransitionStore(media, {"luna": [5842000], "sun": [7771234]}, N).scan()
    assert info.state == "complete" and info.a == LUNA


def test_write_legacy_manifest_refuses_incomplete(store: TransitionStore, media: Path) -> None:
    make_frames(tdir(media, "luna-5842 to sun-7771"), n=N - 1)
    (info,) = store.scan()
    with pytest.raises(SdmorphError, match="not a complete legacy transition"):
        store.write_legacy_manifest(info)
    assert not (info.path / MANIFEST_NAME).exists()


def test_adopted_folder_is_never_written_into(store: TransitionStore, media: Path) -> None:
    make_frames(tdir(media, "star-child-1234 to sun-12"))
    (info,) = store.scan()
    store.write_legacy_manifest(info)
    assert store.folder_for(STAR, SUN12).name.endswith(" (sdmorph)")


# ----- frame check cache ------------------------------------------------------------------


def test_cache_serves_the_second_scan_and_notices_changes(
    store: TransitionStore, media: Path
) -> None:
    folder = make_frames(tdir(media, "luna-5842 to sun-7771"))
    assert store.scan()[0].state == "complete"
    cache = json.loads((media / FRAMECHECK_PATH).read_text())
    assert len(cache["folders"]["luna-5842 to sun-7771"]) == N
    # A cache entry matching the file's stamp answers without reading the file: garbage
    # the cache vouches for passes. This proves the second scan does not reopen the frames.
    frame = folder / frame_name(1)
    frame.write_bytes(b"x" * frame.stat().st_size)
    st = frame.stat()
    cache["folders"]["luna-5842 to sun-7771"][frame.name] = [
        st.st_size, st.st_mtime_ns, st.st_ctime_ns, 1]
    (media / FRAMECHECK_PATH).write_text(json.dumps(cache))
    fresh = TransitionStore(media, SEEDS, N)  # loads the cache from disk
    assert fresh.scan()[0].state == "complete"
    # Any change of mtime (or size) invalidates the entry.
    os.utime(frame, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert fresh.scan()[0].state == "incomplete"
    frame.write_bytes(png_bytes()[:-3])
    assert TransitionStore(media, SEEDS, N).scan()[0].state == "incomplete"
    frame.write_bytes(png_bytes())
    assert TransitionStore(media, SEEDS, N).scan()[0].state == "complete"


def test_cache_forgets_removed_folders_and_survives_damage(
    store: TransitionStore, media: Path
) -> None:
    a = make_frames(tdir(media, "luna-5842 to sun-7771"))
    make_frames(tdir(media, "luna-5842 to sun-12"))
    store.scan()
    for frame in a.iterdir():
        frame.unlink()
    a.rmdir()
    store.scan()
    cache = json.loads((media / FRAMECHECK_PATH).read_text())
    assert set(cache["folders"]) == {"luna-5842 to sun-12"}
    (media / FRAMECHECK_PATH).write_text("{broken")
    assert [i.state for i in TransitionStore(media, SEEDS, N).scan()] == ["complete"]
    assert json.loads((media / FRAMECHECK_PATH).read_text())["version"] == 3


def test_a_cached_scan_checks_no_frame_again(media: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folders, frames = 12, 20
    prompts = {f"p{i} x-y": [1000 + i] for i in range(folders + 1)}
    source = media / "frame.png"
    source.parent.mkdir(parents=True)
    source.write_bytes(png_bytes())
    for i in range(folders):
        folder = tdir(media, f"p{i} x-y-{1000 + i} to p{i + 1} x-y-{1001 + i}")
        folder.mkdir(parents=True)
        for j in range(frames):
            link_or_copy(source, folder / frame_name(j))
    checked: list[str] = []

    def counting_decodes(path: Path) -> bool:
        checked.append(f"{path.parent.name}/{path.name}")
        return png_decodes(path)

    monkeypatch.setattr(store_module, "png_decodes", counting_decodes)
    first = TransitionStore(media, prompts, frames).scan()
    assert [i.state for i in first] == ["complete"] * folders
    # The first scan checks every frame exactly once...
    assert len(checked) == len(set(checked)) == folders * frames
    checked.clear()
    # ...and a later one, by a fresh store reading the cache from disk, none.
    second = TransitionStore(media, prompts, frames).scan()
    assert [i.state for i in second] == ["complete"] * folders
    assert checked == []


def link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        target.write_bytes(source.read_bytes())


# ----- locks ------------------------------------------------------------------------------


def test_lock_is_exclusive_and_unordered(store: TransitionStore) -> None:
    with store.lock(LUNA, SUN) as got:
        assert got
        with store.lock(SUN, LUNA) as again:
            assert not again
        with store.lock(LUNA, SUN12) as other:
            assert other
    with store.lock(SUN, LUNA) as after:
        assert after
    assert store.lock_path(LUNA, SUN).parent == store.root / ".locks"
    assert store.scan() == []  # the .locks folder is not a transition


_HOLDER = """
import sys, time
from pathlib import Path
from sdmorph.core.ids import ImageId
from sdmorph.media.store import TransitionStore
store = TransitionStore(Path(sys.argv[1]), {}, 6)
with store.lock(ImageId("luna", 5842234013956479), ImageId("sun", 7771234)) as got:
    print("locked" if got else "refused", flush=True)
    time.sleep(60)
"""


@pytest.mark.slow
def test_lock_across_processes_released_when_holder_is_killed(
    store: TransitionStore, media: Path
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(media)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with store.lock(SUN, LUNA) as got:
            assert not got
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        with store.lock(LUNA, SUN) as got:
            assert got
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
