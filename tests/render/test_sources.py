"""Model sources checked without loading anything: what `validate` reports about a profile."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sdmorph.formats.profile import Profile
from sdmorph.render.sources import looks_like_path, profile_problems, source_problems

FILE = Path("/songs/meta/song/tgen_settings.json")


def messages(profile: Profile, model: str | None = None) -> list[str]:
    problems = profile_problems(profile, FILE, model)
    assert all(p.file == FILE for p in problems)
    return [p.message for p in problems]


def test_the_built_in_model_and_hub_ids_are_accepted() -> None:
    assert messages(Profile(model_string="tiny-random")) == []
    assert messages(Profile(model_string="tiny-random", controlnet_string="tiny-random")) == []
    # Whether a hub id is cached or downloadable shows only when loading.
    for hub_id in ("someone/some-model", "runwayml/stable-diffusion-v1-5", "bare-name"):
        assert not looks_like_path(hub_id)
        assert messages(Profile(model_string=hub_id, controlnet_string=hub_id)) == []


@pytest.mark.parametrize("source", ["./weights/model", "/no/such/folder", "~/nowhere/model",
                                    "a/b/c", "C:\\models\\sd", "..\\sd"])
def test_paths_are_told_from_hub_ids(source: str) -> None:
    assert looks_like_path(source)


def test_missing_local_file_and_folder_are_named(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    profile = Profile(name="big", model_string="./weights/gone.safetensors",
                      controlnet_string=str(tmp_path / "no" / "cnet"))
    assert messages(profile) == [
        f"profile 'big': model_string './weights/gone.safetensors': no such file "
        f"(relative to {tmp_path})",
        f"profile 'big': controlnet_string '{tmp_path / 'no' / 'cnet'}': no such folder",
    ]
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "gone.safetensors").write_bytes(b"")
    (tmp_path / "no" / "cnet").mkdir(parents=True)
    assert messages(profile) == []
    # A .ckpt suffix in any case is a single file too; a folder of that name is not one.
    (tmp_path / "model.CKPT").mkdir()
    assert source_problems(str(tmp_path / "model.CKPT"), "model_string") == [
        f"model_string '{tmp_path / 'model.CKPT'}': no such file"
    ]


def test_a_model_override_replaces_model_string() -> None:
    profile = Profile(model_string="/gone/model.safetensors")
    assert len(messages(profile)) == 1
    assert messages(profile, model="tiny-random") == []


def test_the_tiny_controlnet_fits_only_the_tiny_model() -> None:
    refused = ("profile 'default': controlnet_string 'tiny-random' only fits model 'tiny-random', "
               "not 'someone/sd15'")
    refusing = Profile(model_string="someone/sd15", controlnet_string="tiny-random")
    assert messages(refusing) == [refused]
    assert messages(Profile(model_string="tiny-random", controlnet_string="tiny-random"),
                    model="someone/sd15") == [refused]
    assert messages(Profile(model_string="someone/sd15", controlnet_string="tiny-random"),
                    model="tiny-random") == []


def test_an_unknown_scheduler_is_refused_with_the_valid_names() -> None:
    [message] = messages(Profile(model_string="tiny-random", scheduler="FancyScheduler"))
    assert message.startswith("profile 'default': scheduler 'FancyScheduler'")
    assert "EulerDiscreteScheduler" in message
    assert messages(Profile(model_string="tiny-random", scheduler="EulerDiscreteScheduler")) == []


CHECK = """
import json, sys
from pathlib import Path
from sdmorph.formats.profile import Profile
from sdmorph.render.sources import profile_problems
found = {}
found["problems"] = [p.message for p in profile_problems(
    Profile(model_string="someone/model", controlnet_string="/no/cnet"), Path("s.json"))]
found["imported"] = sorted(m for m in ("torch", "diffusers", "transformers") if m in sys.modules)
print(json.dumps(found))
"""


@pytest.mark.slow
def test_checking_sources_without_a_scheduler_does_not_import_torch() -> None:
    # `validate` runs these checks on every song: only a named scheduler may cost a torch import.
    proc = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True,
                          timeout=600, check=True)
    found = json.loads(proc.stdout)
    assert found["problems"] == ["profile 'default': controlnet_string '/no/cnet': no such folder"]
    assert found["imported"] == []
