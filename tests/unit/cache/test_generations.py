"""Invalidation generations: one increment drops every variant, in every worker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from gateway.cache.generations import SLOTS, Generations


def test_bump_changes_the_value() -> None:
    generations = Generations()
    try:
        before = generations.of("/api/items")
        generations.bump("/api/items")
        assert generations.of("/api/items") != before
        generations.bump("/api/items")
        assert generations.of("/api/items") == before + 2
    finally:
        generations.close()


@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=20))
def test_every_bumped_path_changes(paths: list[str]) -> None:
    generations = Generations()
    try:
        for path in paths:
            before = generations.of(path)
            generations.bump(path)
            assert generations.of(path) != before
    finally:
        generations.close()


def test_a_counter_wraps_instead_of_overflowing() -> None:
    generations = Generations()
    try:
        slot = generations._slot("/x")
        generations._table[slot] = 2**64 - 1
        generations.bump("/x")
        assert generations.of("/x") == 0
    finally:
        generations.close()


def test_two_objects_on_one_file_see_each_others_bumps(tmp_path: Path) -> None:
    # The multi-worker case: each worker maps the supervisor's file.
    file = tmp_path / "cache-generations"
    Generations.create_file(file)
    one, two = Generations(file), Generations(file)
    try:
        assert one.of("/api/items") == two.of("/api/items") == 0
        one.bump("/api/items")
        assert two.of("/api/items") == 1
        two.bump("/api/items")
        two.bump("/api/other")
        assert one.of("/api/items") == 2
        assert one.of("/api/other") == 1
    finally:
        one.close()
        two.close()


def test_another_process_finds_the_same_slot(tmp_path: Path) -> None:
    # Python's str hash is salted per process; the slot must not be.
    file = tmp_path / "cache-generations"
    Generations.create_file(file)
    mine = Generations(file)
    try:
        code = (
            "import sys; from pathlib import Path; from gateway.cache.generations import Generations; "
            "g = Generations(Path(sys.argv[1])); g.bump('/api/menu-items'); g.bump('/api/menu-items'); g.close()"
        )
        subprocess.run([sys.executable, "-c", code, str(file)], check=True, env={"PYTHONHASHSEED": "random"})
        assert mine.of("/api/menu-items") == 2
    finally:
        mine.close()


def test_opening_a_short_file_grows_it_to_the_table(tmp_path: Path) -> None:
    file = tmp_path / "g"
    file.write_bytes(b"")
    generations = Generations(file)
    try:
        assert file.stat().st_size == SLOTS * 8
        generations.bump("/a")
        assert generations.of("/a") == 1
    finally:
        generations.close()
