"""Fuzzing the loaders: every input loads, or fails with sdmorph's own error naming the file.

The inputs are arbitrary bytes and mutations of valid files (prompt sheets, settings,
scene sequences, story files, transition tables, legacy folder and frame names, whole
song folders through `sdmorph validate`). CI runs a few hundred examples in all;
`scripts/fuzz.py --examples 10000` runs the same properties with many more (it sets
SDMORPH_FUZZ_EXAMPLES, the total the properties share in proportion to their CI counts).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import re
import tempfile
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from sdmorph.cli.app import app
from sdmorph.core.errors import SdmorphError
from sdmorph.core.ids import ImageId
from sdmorph.formats.fsio import safe_name
from sdmorph.formats.legacy import (
    LegacyName,
    Unparsed,
    frame_index,
    frame_name,
    parse_legacy_name,
)
from sdmorph.formats.plan_tables import read_story, read_transition_tables, skipped_by_artist
from sdmorph.formats.profile import load_settings_file
from sdmorph.formats.prompt_sheet import keep_seeds
from sdmorph.formats.song import load_prompt_sheet, load_scene_rows, load_song, resolver
from sdmorph.media.store import TransitionStore, png_complete
from sdmorph.stages.plan import planned_pairs
from songs import SHEET, env_for, write_song

# ------------------------------------------------------------------ example budget

# CI counts per property; they sum to a few hundred. SDMORPH_FUZZ_EXAMPLES=N shares N
# examples among the properties in the same proportions.
CI_EXAMPLES = {
    "sheet_bytes": 40, "sheet_mutations": 60, "keep_seeds": 30, "settings_bytes": 30,
    "settings_json": 60, "settings_mutations": 40, "scene_mutations": 40, "song": 40,
    "story": 50, "tables": 40, "legacy_names": 80, "frame_names": 40, "store_scan": 15,
    "cli_validate": 15,
}
_TOTAL = int(os.environ.get("SDMORPH_FUZZ_EXAMPLES", "0") or 0)
# The fuzz profile explores afresh every run; CI is derandomized so it never flakes.
settings.register_profile(
    "sdmorph-ci", derandomize=True, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large],
)
settings.register_profile(
    "sdmorph-fuzz", parent=settings.get_profile("sdmorph-ci"), derandomize=False,
)
PROFILE = settings.get_profile("sdmorph-fuzz" if _TOTAL else "sdmorph-ci")


def fuzz(name: str) -> Callable:
    """Hypothesis settings for one property: its CI count, or its share of the total."""
    ci = CI_EXAMPLES[name]
    count = max(ci, round(_TOTAL * ci / sum(CI_EXAMPLES.values()))) if _TOTAL else ci
    return settings(PROFILE, max_examples=count)


@contextmanager
def scratch() -> Iterator[Path]:
    """A fresh folder per example (pytest's tmp_path is shared by all examples of a test)."""
    with tempfile.TemporaryDirectory(prefix="sdmorph-fuzz-") as name:
        yield Path(name)


def assert_names(exc: SdmorphError, *files: Path) -> None:
    """Every problem line names one of `files` (a file, or the folder it lives in)."""
    assert exc.problems
    for problem in exc.problems:
        text = str(problem)
        assert any(str(f) in text for f in files), f"{text!r} names none of {files}"
        text.encode("utf-8")  # printable on any terminal


def check_load(load: Callable[[], object], *files: Path) -> object | None:
    """Run a loader: its result, or None after checking its SdmorphError."""
    try:
        return load()
    except SdmorphError as exc:
        assert_names(exc, *files)
        return None


# ------------------------------------------------------------------ text mutations

# Characters and cells that broke CSV/JSON readers before, or that should not break them.
PIECES = [
    ",", '"', "'", "\n", "\r\n", "\r", "\x00", "\x1b", "\ufeff", " ", "\t", ";", "-", "_",
    " to ", ".", "..", "/", "\\", ":", "²", "٣", "١٢", "1e400", "NaN", "-1", "inf",
    "18446744073709551616", "0001", "5842234013956479", "../../x", "/etc/passwd",
    "[/x]", "[bold]", "$", "é", "e\u0301", "😀", "\u202e", "x" * 300, "{", "}", "[", "]",
    "\\ud800", "\\u0000", "null", "true", "1.5", "3.0", "y", "n", "random",
]


@st.composite
def mutated(draw: st.DrawFn, samples: list[str], max_edits: int = 5) -> str:
    """One of `samples` with a few random edits: inserts, deletions, swaps, duplications."""
    text = draw(st.sampled_from(samples))
    for _ in range(draw(st.integers(0, max_edits))):
        kind = draw(st.sampled_from(["insert", "insert", "delete", "replace", "dupline",
                                     "dropline", "text"]))
        at = draw(st.integers(0, len(text)))
        if kind == "insert":
            text = text[:at] + draw(st.sampled_from(PIECES)) + text[at:]
        elif kind == "text":
            text = text[:at] + draw(st.text(max_size=8)) + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 12)):]
        elif kind == "replace" and at < len(text):
            text = text[:at] + draw(st.sampled_from(PIECES)) + text[at + 1:]
        elif kind in ("dupline", "dropline"):
            lines = text.splitlines(keepends=True)
            if lines:
                k = draw(st.integers(0, len(lines) - 1))
                lines[k:k + 1] = [lines[k]] * (2 if kind == "dupline" else 0)
                text = "".join(lines)
    return text


@st.composite
def encoded(draw: st.DrawFn, texts: st.SearchStrategy[str]) -> bytes:
    """Text as a file holds it: UTF-8 (maybe with a BOM), or now and then another encoding."""
    text = draw(texts)
    how = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "bom", "latin-1", "utf-16", "cut"]))
    if how == "bom":
        return b"\xef\xbb\xbf" + text.encode("utf-8", "surrogatepass")
    if how in ("latin-1", "utf-16"):
        return text.encode(how, "replace")
    data = text.encode("utf-8", "surrogatepass")
    if how == "cut" and data:
        return data[: draw(st.integers(0, len(data) - 1))]
    return data


# ------------------------------------------------------------------ valid samples

SHEETS = [
    SHEET,
    "\ufeffname,prompt,seeds,guidance_scale,negative_prompt,mask,cnet_scale,,\n"
    'luna,"a moon, glowing","6497, 3676, 3855",7.5,,shapes/square,0.5,,\n'
    ",,,,,,,,\n"
    "sun,a sun,0001 5842234013956479,8,blurry,,,,\n",
    "name,prompt,seeds\r\n"
    'cloud goddess4,"a goddess, ""clouds""",4440123 4441\r\n'
    "star,a star,\r\n"
    "luna,duplicate,5,\r\n",
]
SCENE_SHEETS = [
    ",scene,duration,section,start,avoid\n0,luna,1,1,,\n1,sun,1,1,,\n2,star,1,2,,\n",
    '0,scene,duration,section,start,avoid, \n0,luna,2,1,luna_1001,"luna_1002, luna_1003",\n'
    "1,sun,0,1,random,,\n2,star,1.0,2,\"star_3001, star_3002\",star_3003,\n",
    "scene,duration,section,start\nluna,1,1,luna_100\nold folder,1,2,\n",
]
SETTINGS_SAMPLES = [
    {"default": {"model_string": "tiny-random", "res_width": 64, "res_height": 64,
                 "interpolation_steps": 4, "noise": "cpu",
                 "pipe_kwargs": {"num_inference_steps": 3}}},
    {"song_name": "x", "res_height": 564, "res_width": 1024, "interpolation_steps": 30,
     "model_string": "runwayml/stable-diffusion-v1-5", "seed_delimiter": ", ",
     "inference_steps": 25, "mask_image": "blank", "controlnet_string": "tiny-random",
     "pipe_kwargs": {"negative_prompt": "blurry", "control_guidance_start": 0.1,
                     "control_guidance_end": 0.9, "controlnet_conditioning_scale": 0.7}},
    {"default": {"res_width": 512}, "cell": {"res_width": 768, "cnet_image": "shapes/a",
                                             "fps": 12, "batch_size": 2, "unknown": [1]}},
]
SETTINGS_TEXTS = [json.dumps(s, indent=2) for s in SETTINGS_SAMPLES]
PROFILE_KEYS = ["res_height", "res_width", "interpolation_steps", "model_string",
                "controlnet_string", "seed_delimiter", "inference_steps", "mask_image",
                "cnet_image", "pipe_kwargs", "song_name", "guidance_scale", "scheduler",
                "noise", "fps", "batch_size", "num_inference_steps", "negative_prompt",
                "control_guidance_start", "control_guidance_end", "other"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
    | st.sampled_from([0, 1, 7, 8, 64, 564, 2**64, -8, 0.5, "tiny-random", "cpu", "cuda", ""]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(PROFILE_KEYS) | st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)
profile_objects = st.dictionaries(st.sampled_from(PROFILE_KEYS), json_values, max_size=8)
settings_objects = profile_objects | st.dictionaries(
    st.sampled_from(["default", "cell", "x"]) | st.text(max_size=6),
    profile_objects | json_values, max_size=3,
)

# Old stories: path_section, section, scene_from, c1, c2, reversed, input_image_folder.
STORIES = [
    ",path_section,section,scene_from,c1,c2,reversed,input_image_folder\n"
    "0,1,1,luna,luna-1001,luna-1002,False,G:\\media\\song\\transition_images\\x\n"
    "1,1,1,luna,luna-1002,sun-2001,True,/data/song/transition_images/sun-2001 to luna-1002\n"
    "2,1,2,sun,sun-2001,star-3001,false,\n",
    ",scene_from,c1,c2,section,reversed,input_image_folder,c1_seed,c2_seed,scene_to,kind\n"
    "0,luna,luna-1001,luna-1002,1,False,x,1001,1002,luna,intra\n"
    "1,luna,luna-1002,sun-2001,1,False,y,1002,2001,sun,inter\n",
    ",path_section,section,scene_from,c1,c2,reversed,input_image_folder,c1_name,c1_seed,"
    "c2_name,c2_seed,first_frame,last_frame\n"
    "0,1,1,luna,luna-1001,luna-1003,0,,luna,1001,luna,1003,0,3\n"
    "\n"
    "1,1,2,luna,luna-1003,star-3003,1,,,,,,3.0,6\n",
]
TABLES = {
    "intrascene_transitions.csv": [
        ",from_name,from_seed,to_name,to_seed,compute,duration,scene\n"
        "0,luna,1001,luna,1002,y,4,luna\n1,sun,2001,sun,2002,n,4,sun\n",
        ",from_name,from_seed,to_name,to_seed,compute,duration,scene,section\n"
        "0,luna,1001,luna,1003,Y,4.0,luna,1\n\n1,star,3001,star,3002,no,,star,2\n",
    ],
    "interscene_transitions.csv": [
        ",from_name,from_seed,to_name,to_seed,compute,duration,scene_from,scene_to\n"
        "0,luna,1001,sun,2001,y,4,luna,sun\n1,sun,2003,star,3001,n,4,sun,star\n",
    ],
}


# ------------------------------------------------------------------ prompt sheets


@fuzz("sheet_bytes")
@given(data=st.binary(max_size=400) | encoded(mutated(SHEETS, 3)))
def test_prompt_sheet_bytes(data: bytes) -> None:
    with scratch() as root:
        path = root / "prompt_image_definitions.csv"
        path.write_bytes(data)
        check_load(lambda: load_prompt_sheet(path), path)


@pytest.mark.slow
@fuzz("sheet_mutations")
@given(text=mutated(SHEETS))
@example(text="name,prompt,seeds\nluna,a moon,1001 10²\n")  # '²'.isdigit(), int('²') fails
@example(text="name,prompt,seeds\na/b,x,1\na:b,y,2\na_b,z,3\n")  # one file name
def test_prompt_sheet_mutations(text: str) -> None:
    with scratch() as root:
        path = root / "prompt_image_definitions.csv"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        loaded = check_load(lambda: load_prompt_sheet(path), path)
        if loaded is None:
            return
        prompts, problems, warnings = loaded
        for problem in problems:
            assert str(path) in str(problem)
        assert len({safe_name(name) for name in prompts}) == len(prompts) or problems
        for name, prompt in prompts.items():
            assert name and name == prompt.name
            assert all(isinstance(s, int) and 0 <= s < 2**64 for s in prompt.seeds)
            assert len(set(prompt.seeds)) == len(prompt.seeds)


@fuzz("keep_seeds")
@given(text=mutated(SHEETS, 3), seeds=st.lists(st.integers(0, 2**64 - 1), min_size=1,
                                               max_size=3), which=st.integers(0, 5))
def test_keep_seeds_agrees_with_the_loader(text: str, seeds: list[int], which: int) -> None:
    """Seeds kept in a sheet the loader reads cleanly are there when it reads it again."""
    with scratch() as root:
        path = root / "prompt_image_definitions.csv"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        before = check_load(lambda: load_prompt_sheet(path), path)
        if before is None or before[1] or not before[0]:
            return
        names = list(before[0])
        name = names[which % len(names)]
        if check_load(lambda: keep_seeds(path, name, seeds), path) is None:
            return
        after, problems, _ = load_prompt_sheet(path)
        assert not problems
        assert set(after[name].seeds) == set(before[0][name].seeds) | set(seeds)
        assert {k: v for k, v in after.items() if k != name} == {
            k: v for k, v in before[0].items() if k != name
        }


# ------------------------------------------------------------------ settings


@fuzz("settings_bytes")
@given(data=st.binary(max_size=300), profile=st.sampled_from(["default", "cell"]))
def test_settings_bytes(data: bytes, profile: str) -> None:
    with scratch() as root:
        path = root / "tgen_settings.json"
        path.write_bytes(data)
        check_load(lambda: load_settings_file(path, profile), path)


def check_settings(path: Path, profile: str) -> None:
    loaded = check_load(lambda: load_settings_file(path, profile), path)
    if loaded is None:
        return
    p = loaded.profile  # type: ignore[attr-defined]
    assert p.res_width >= 8 and p.res_height >= 8
    assert p.interpolation_steps >= 2 and p.num_inference_steps >= 1
    assert all(math.isfinite(v) for v in (p.guidance_scale, p.controlnet_conditioning_scale))
    json.dumps(loaded.model_dump(), ensure_ascii=False).encode("utf-8")  # type: ignore[attr-defined]


@pytest.mark.slow
@fuzz("settings_json")
@example(data={"res_height": False}, profile="default")
@example(data={"default": {"guidance_scale": float("nan")}}, profile="default")
@given(data=settings_objects | json_values, profile=st.sampled_from(["default", "cell", "x"]))
def test_settings_json(data: object, profile: str) -> None:
    with scratch() as root:
        path = root / "tgen_settings.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        check_settings(path, profile)


@fuzz("settings_mutations")
@given(data=encoded(mutated(SETTINGS_TEXTS)), profile=st.sampled_from(["default", "cell"]))
@example(data=b'{"\\ud800": {"res_width": 64}, "default": {}}', profile="default")
def test_settings_mutations(data: bytes, profile: str) -> None:
    with scratch() as root:
        path = root / "tgen_settings.json"
        path.write_bytes(data)
        check_settings(path, profile)


def test_settings_deep_nesting_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "tgen_settings.json"
    path.write_text('{"default": ' + "[" * 100_000 + "]" * 100_000 + "}")
    check_load(lambda: load_settings_file(path), path)


# ------------------------------------------------------------------ scenes and songs


@fuzz("scene_mutations")
@given(data=st.binary(max_size=200) | encoded(mutated(SCENE_SHEETS)))
def test_scene_sequence(data: bytes) -> None:
    with scratch() as root:
        path = root / "scene_sequence.csv"
        path.write_bytes(data)
        loaded = check_load(lambda: load_scene_rows(path), path)
        if loaded is not None:
            rows, _, _ = loaded
            assert all(r.scene and r.duration >= 0 and r.section >= 0 for r in rows)


@fuzz("song")
@given(sheet=encoded(mutated(SHEETS, 3)), scenes=encoded(mutated(SCENE_SHEETS, 3)),
       settings_text=mutated(SETTINGS_TEXTS, 2), profile=st.sampled_from(["default", "cell"]),
       strict=st.booleans())
@example(sheet=SHEET.encode(), scenes=b",scene,duration,section\n0,../../outside,1,1\n",
         settings_text=SETTINGS_TEXTS[0], profile="default", strict=False)
def test_load_song(sheet: bytes, scenes: bytes, settings_text: str, profile: str,
                   strict: bool) -> None:
    with scratch() as root:
        meta, media = write_song(root, sheet=sheet, scenes=scenes, settings=settings_text)
        (media / "scenes" / "old folder").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(media / "scenes" / "old folder" / "luna_1001.png")
        (root / "media" / "outside").mkdir()
        check_load(lambda: load_song(meta, media, profile=profile, strict=strict), meta, media)


# ------------------------------------------------------------------ stories and tables


def _sheet_song() -> object:
    root = Path(tempfile.mkdtemp(prefix="sdmorph-fuzz-song-"))
    sheet = SHEET.replace("1001 1002 1003", "1001 1002 1003 10015 4440123")
    meta, media = write_song(root, sheet=sheet)
    return load_song(meta, media)


SONG = _sheet_song()


_resolve = resolver(SONG)  # type: ignore[arg-type]


@fuzz("story")
@given(data=st.binary(max_size=200) | encoded(mutated(STORIES)))
def test_read_story(data: bytes) -> None:
    with scratch() as root:
        path = root / "trans_sequence.csv"
        path.write_bytes(data)
        rows = check_load(lambda: read_story(path, _resolve), path)
        for row in rows or []:  # type: ignore[union-attr]
            for image in (row.c1, row.c2):
                assert image.seed in SONG.prompts[image.prompt].seeds  # type: ignore[attr-defined]


@fuzz("tables")
@given(intra=st.none() | st.binary(max_size=100) | encoded(
    mutated(TABLES["intrascene_transitions.csv"])),
       inter=st.none() | encoded(mutated(TABLES["interscene_transitions.csv"])))
def test_transition_tables(intra: bytes | None, inter: bytes | None) -> None:
    with scratch() as root:
        paths = []
        for name, data in (("intrascene_transitions.csv", intra),
                           ("interscene_transitions.csv", inter)):
            if data is not None:
                (root / name).write_bytes(data)
                paths.append(root / name)
        loaded = check_load(lambda: read_transition_tables(root), *paths)
        if loaded is None:
            return
        for row in [*loaded[0], *loaded[1]]:  # type: ignore[index]
            assert row.compute in ("y", "n")
            int(row.from_seed), int(row.to_seed)  # seeds as written are plain digits
            try:
                row.images(_resolve)
            except SdmorphError as exc:
                assert str(exc)  # callers add the table and row (see test_planned_pairs...)
        skipped = skipped_by_artist(root, _resolve)
        assert all(len(pair) in (1, 2) for pair in skipped)


def test_planned_pairs_names_the_table_and_row(tmp_path: Path) -> None:
    song = dataclasses.replace(SONG, media_dir=tmp_path)  # type: ignore[type-var]
    table = tmp_path / "transition_meta" / "intrascene_transitions.csv"
    table.parent.mkdir()
    table.write_text(TABLES["intrascene_transitions.csv"][0].replace("1002", "3001"))
    with pytest.raises(SdmorphError) as caught:
        planned_pairs(song)
    assert str(table) in str(caught.value) and "row 2" in str(caught.value)


# ------------------------------------------------------------------ legacy names

LEGACY_SEEDS = {
    "luna": (1001, 1002, 10015),
    "sun": (2001, 2002),
    "cloud goddess-4": (4440123, 4441),
    "a to b": (5555,),
    "x-1": (77, 7700),
    "café": (12,),  # NFC in the sheet; folders from macOS may be NFD
}
LEGACY_LABELS = [f"{p}-{str(s)[:4]}" for p, seeds in LEGACY_SEEDS.items() for s in seeds]
legacy_names = mutated(
    [f"{a} to {b}" for a in LEGACY_LABELS for b in LEGACY_LABELS], max_edits=3
) | st.text(max_size=40)


@fuzz("legacy_names")
@given(name=legacy_names)
def test_legacy_names(name: str) -> None:
    parsed = parse_legacy_name(name, LEGACY_SEEDS)
    assert isinstance(parsed, LegacyName | Unparsed)
    if isinstance(parsed, LegacyName):
        runs = re.findall(r"[0-9]+", name)
        for image in (parsed.a, parsed.b):
            assert image.seed in LEGACY_SEEDS[image.prompt]
            assert unicodedata.normalize("NFC", image.prompt) in unicodedata.normalize(
                "NFC", name)
            # Named by the whole seed, or by its first 4 digits as the old scripts cut it.
            assert any(int(run) == image.seed or (len(run) == 4 and str(image.seed)
                                                  .startswith(run)) for run in runs)
    else:
        assert parsed.reason


@fuzz("frame_names")
@example(name="frame000000.png\n")
@example(name="frame٠٠٠٠٠١.png")  # Arabic-Indic digits match \\d
@given(name=st.text(max_size=20) | st.builds(
    lambda i, extra: frame_name(i) + extra, st.integers(0, 10**6 - 1),
    st.sampled_from(["", " (1)", ".tmp", "\n"])) | mutated(["frame000003.png"], 2))
def test_frame_names(name: str) -> None:
    index = frame_index(name)
    if index is not None:
        assert 0 <= index < 10**6 and frame_name(index) == name


# ------------------------------------------------------------------ the transition store

PNG = io.BytesIO()
Image.new("RGB", (8, 8), (200, 30, 30)).save(PNG, format="PNG")
PNG_BYTES = PNG.getvalue()
frame_contents = st.sampled_from([
    PNG_BYTES, PNG_BYTES[:-5], PNG_BYTES[:20], PNG_BYTES[:-12] + b"\0" * 12, b"", b"garbage",
])
frame_files = st.dictionaries(
    st.sampled_from([frame_name(i) for i in range(5)] + ["frame000003 (1).png", "frame٠٠٠٠٠١.png",
                                                        "frame00001.png", "manifest.json",
                                                        ".sdmorph-partial.json"])
    | st.text(min_size=1, max_size=12),
    frame_contents | st.binary(max_size=60), max_size=6,
)
folder_names = legacy_names | st.binary(min_size=1, max_size=30)


def _fs_name(name: str | bytes) -> bytes | None:
    raw = name if isinstance(name, bytes) else name.encode("utf-8", "surrogateescape")
    if not raw or b"/" in raw or b"\0" in raw or raw in (b".", b"..") or len(raw) > 255:
        return None
    return raw


@fuzz("store_scan")
@given(folders=st.dictionaries(folder_names, frame_files, max_size=5))
def test_store_scan(folders: dict[str | bytes, dict[str, bytes]]) -> None:
    expected = 4
    with scratch() as root:
        base = root / "transition_images"
        good = base / "luna-1002 to sun-2001"
        good.mkdir(parents=True)
        for i in range(expected):
            (good / frame_name(i)).write_bytes(PNG_BYTES)
        for name, files in folders.items():
            raw = _fs_name(name)
            if raw is None or raw == os.fsencode(good.name):
                continue
            folder = os.path.join(os.fsencode(base), raw)
            os.makedirs(folder, exist_ok=True)
            for file, content in files.items():
                fraw = _fs_name(file)
                if fraw is not None:
                    with open(os.path.join(folder, fraw), "wb") as fh:
                        fh.write(content)
        store = TransitionStore(root, LEGACY_SEEDS, expected)
        infos = {info.name: info for info in store.scan()}
        assert infos[good.name].state == "complete"
        assert (infos[good.name].a, infos[good.name].b) == (ImageId("luna", 1002),
                                                             ImageId("sun", 2001))
        for info in infos.values():
            if info.state == "complete":
                assert info.a is not None and info.b is not None
                assert info.a.seed in LEGACY_SEEDS[info.a.prompt]
                assert all(png_complete(info.path / frame_name(i)) for i in range(expected))
        assert store.find(ImageId("sun", 2001), ImageId("luna", 1002)) is not None
        store.scan()  # again, now from the frame-check cache


# ------------------------------------------------------------------ the CLI

runner = CliRunner()


def test_cli_prints_brackets_verbatim(tmp_path: Path) -> None:
    scenes = ",scene,duration,section,[/x]\n0,luna,1,1,\n1,sun,1,1,\n2,star,1,2,\n"
    write_song(tmp_path, scenes=scenes)
    warned = runner.invoke(app, ["validate", "song"], env=env_for(tmp_path))
    assert warned.exit_code == 0 and "'[/x]'" in warned.stderr
    write_song(tmp_path, sheet=SHEET.replace("1001 1002", "[bold]"))
    failed = runner.invoke(app, ["validate", "song"], env=env_for(tmp_path))
    assert failed.exit_code == 2 and "'[bold]'" in failed.stderr


@fuzz("cli_validate")
@given(sheet=encoded(mutated(SHEETS, 3)), scenes=encoded(mutated(SCENE_SHEETS, 3)),
       settings_text=mutated(SETTINGS_TEXTS, 2), strict=st.booleans())
@pytest.mark.slow
def test_cli_validate(sheet: bytes, scenes: bytes, settings_text: str, strict: bool) -> None:
    with scratch() as root:
        meta, media = write_song(root, sheet=sheet, scenes=scenes, settings=settings_text)
        (meta / "masks" / "shapes").mkdir(parents=True)
        Image.new("RGBA", (16, 16)).save(meta / "masks" / "shapes" / "square.png")
        (meta / "masks" / "blank.svg").write_text("<svg")
        args = ["validate", "song", *(["--strict"] if strict else [])]
        result = runner.invoke(app, args, env=env_for(root))
        assert result.exit_code in (0, 2), result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert "Traceback" not in result.output
        if result.exit_code == 2:
            errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
            assert errors, result.stderr
            assert all(str(meta) in line or str(media) in line for line in errors), errors
