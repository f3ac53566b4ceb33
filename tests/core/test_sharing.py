"""The shared-denoising tree: who starts from whom, and at which step."""

from __future__ import annotations

import pytest

from sdmorph.core.sharing import Branch, between, bisection, cost, join_step, with_ancestors


def test_sharing_zero_joins_every_frame_at_the_start() -> None:
    assert [join_step(level, 0.0, 11) for level in range(5)] == [0] * 5


def test_deeper_levels_join_later_and_never_at_the_last_step() -> None:
    steps = [join_step(level, 0.8, 11) for level in range(1, 6)]
    assert steps == sorted(steps) and steps[0] < steps[-1]
    assert steps[-1] == round(0.8 * 11)
    assert join_step(5, 0.95, 2) == 1  # a frame keeps at least one step of its own


def test_bisection_halves_the_intervals_level_by_level() -> None:
    tree = bisection(9)
    assert tree[0] == Branch(4, 0, 8, 1)
    assert {b.key for b in tree} == set(range(1, 8))
    placed = {0, 8}
    for branch in tree:  # parents are always placed before their children
        assert branch.left in placed and branch.right in placed
        assert branch.left < branch.key < branch.right
        placed.add(branch.key)
    assert max(b.level for b in tree) == 3


def test_between_builds_a_bisection_tree_from_a_uniform_grid() -> None:
    grid = 8
    tree = between({0: 0, 64: 0}, [8 * k for k in range(1, grid)])
    by_key = {b.key: b for b in tree}
    assert by_key[32] == Branch(32, 0, 64, 1)
    assert by_key[16] == Branch(16, 0, 32, 2) and by_key[48] == Branch(48, 32, 64, 2)
    assert by_key[8].level == 3 and (by_key[8].left, by_key[8].right) == (0, 16)


def test_between_without_chain_starts_every_frame_from_the_placed_ones() -> None:
    tree = between({0: 0, 10: 1, 20: 0}, [3, 5, 15], chain=False)
    assert [(b.key, b.left, b.right, b.level) for b in tree] == [
        (3, 0, 10, 2), (5, 0, 10, 2), (15, 10, 20, 2)]
    with pytest.raises(ValueError, match="placed already"):
        between({0: 0, 10: 0}, [10])


def test_the_cost_of_a_tree_follows_the_sharing() -> None:
    tree = bisection(17)
    assert cost(tree, 0.0, 11) == 1.0
    assert 0.15 < cost(tree, 0.8, 11) < 0.35  # about 1 - s: most frames are deep
    assert cost(tree, 0.5, 11) > cost(tree, 0.8, 11)


def test_a_missing_frame_needs_every_frame_it_starts_from() -> None:
    tree = bisection(9)  # 4 from (0, 8); 2 from (0, 4); 1 from (0, 2)
    assert with_ancestors(tree, {1}) == {1, 2, 4}
    assert with_ancestors(tree, {0, 8}) == set()  # keyframes: not branches
    assert with_ancestors(tree, {7, 1}) == {1, 2, 4, 6, 7}
