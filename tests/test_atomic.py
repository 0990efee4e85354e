"""Atomic writes: the target is whole or untouched, and no temporary file or folder is left behind."""

from __future__ import annotations

import pytest

from sftune.atomic import atomic_dir, atomic_file


def test_atomic_file_replaces_on_success_and_keeps_the_old_file_on_error(tmp_path):
    target = tmp_path / "rows.jsonl"
    with atomic_file(target) as f:
        f.write("first\n")
    assert target.read_text() == "first\n"
    with pytest.raises(RuntimeError), atomic_file(target) as f:
        f.write("half of the second vers")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "first\n"
    assert [p.name for p in tmp_path.iterdir()] == ["rows.jsonl"]


def test_atomic_dir_replaces_a_whole_folder_or_nothing(tmp_path):
    target = tmp_path / "out" / "merged"
    with atomic_dir(target, prefix=".merging-") as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".merging-") and not target.exists()
        (tmp / "a.json").write_text("1")
    assert sorted(p.name for p in target.iterdir()) == ["a.json"]
    with atomic_dir(target) as tmp:  # a second write replaces the folder as a whole: no stale a.json
        (tmp / "b.json").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b.json"]
    with pytest.raises(OSError), atomic_dir(target) as tmp:
        (tmp / "c.json").write_text("3")
        raise OSError("disk full")
    assert sorted(p.name for p in target.iterdir()) == ["b.json"]
    assert [p.name for p in target.parent.iterdir()] == ["merged"]
