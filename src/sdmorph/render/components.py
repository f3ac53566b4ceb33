"""Model components built once per process and handed out as independent copies.

The built-in models are built (or loaded) in about a second, and tests build hundreds of
pipelines: each build shares one set of components, and every pipeline gets deep copies, so a
caller moving, casting or fusing its pipeline cannot change anyone else's.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable

Components = dict[str, object]


class ComponentCache:
    """`build()` run at most once, thread-safely; `copy()` gives a private deep copy."""

    def __init__(self, build: Callable[[], Components]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._parts: Components | None = None

    def shared(self) -> Components:
        """The one built set: read it, never change it."""
        with self._lock:
            if self._parts is None:
                self._parts = self._build()
            return self._parts

    def copy(self, name: str | None = None) -> object:
        """A deep copy of every component, or of the one called `name`."""
        parts = self.shared()
        return copy.deepcopy(parts if name is None else parts[name])
