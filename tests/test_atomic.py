"""Atomic writes leave either the old state or the complete new one, never a partial file."""

from __future__ import annotations

from pathlib import Path

import pytest

from ram.atomic import atomic_file, atomic_write_text, staged_dir


def test_atomic_file_replaces_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.txt"
    atomic_write_text(target, "v1")
    with pytest.raises(RuntimeError):
        with atomic_file(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "v1"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]  # no temp left


def test_staged_dir_swaps_whole_directories(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with staged_dir(target) as stage:
        (stage / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with staged_dir(target) as stage:
            (stage / "a").write_text("2")
            raise RuntimeError("crash")
    assert (target / "a").read_text() == "1"
    with staged_dir(target) as stage:
        (stage / "b").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
