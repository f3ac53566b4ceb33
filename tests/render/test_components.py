"""Components built once, copies handed out."""

from __future__ import annotations

import threading

from sdmorph.render.components import ComponentCache


def test_builds_once_even_when_asked_from_many_threads() -> None:
    calls = []

    def build() -> dict[str, object]:
        calls.append(1)
        return {"weights": [1.0, 2.0], "config": {"size": 8}}

    cache = ComponentCache(build)
    threads = [threading.Thread(target=cache.shared) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1


def test_copies_are_independent_of_each_other_and_of_the_shared_set() -> None:
    cache = ComponentCache(lambda: {"weights": [1.0, 2.0], "config": {"size": 8}})
    first, second = cache.copy(), cache.copy()
    first["weights"].append(3.0)  # type: ignore[index,union-attr]
    assert second["weights"] == [1.0, 2.0]  # type: ignore[index]
    assert cache.shared()["weights"] == [1.0, 2.0]
    one = cache.copy("config")
    one["size"] = 16  # type: ignore[index]
    assert cache.shared()["config"] == {"size": 8}
