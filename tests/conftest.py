"""Shared fixtures: song builders and the tiny model built once per test session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# Tests never reach the hub, and torch uses a fixed thread count so renders are repeatable.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Two xdist workers on two cores: one torch thread each (and in the subprocesses tests start)
# avoids oversubscription; byte comparisons always compare runs with the same thread count.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _no_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Isolate every test from the developer's .env and environment settings."""
    for key in ("media_dir", "meta_dir", "model_cache_dir", "MEDIA_DIR", "META_DIR",
                "MODEL_CACHE_DIR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
