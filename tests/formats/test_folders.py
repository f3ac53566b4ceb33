"""Folder precedence: .env < environment < command-line options."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdmorph.core.errors import ConfigError
from sdmorph.formats.folders import check_song_name, load_folders


def test_env_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text('media_dir="/m"\nmeta_dir=/meta\n')
    settings = load_folders(tmp_path)
    assert settings.media_dir == Path("/m")
    assert settings.meta_dir == Path("/meta")
    assert settings.model_cache_dir is None


def test_environment_overrides_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("media_dir=/from-file\n")
    monkeypatch.setenv("media_dir", "/from-env")
    assert load_folders(tmp_path).media_dir == Path("/from-env")


def test_options_override_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("media_dir=/from-file\n")
    monkeypatch.setenv("media_dir", "/from-env")
    assert load_folders(tmp_path, media_dir=Path("/opt")).media_dir == Path("/opt")


def test_missing_setting_says_how_to_set_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_folders(tmp_path).require("meta_dir")
    message = str(info.value)
    assert "meta_dir is not set" in message and ".env" in message and "--meta-dir" in message
    assert "\n" not in message


@pytest.mark.parametrize("name", ["../x", "a/b", "..", "", "a\\b"])
def test_song_names_cannot_escape(name: str) -> None:
    with pytest.raises(ConfigError):
        check_song_name(name)


def test_song_names_with_spaces_and_unicode() -> None:
    assert check_song_name("Mondlicht über Berlin") == "Mondlicht über Berlin"
