"""The dataset builders' file helpers: atomic writes and removal of a previous build's files."""

from __future__ import annotations

import json

import pytest

from decodemo.data.writing import remove_stale_files, write_atomically, write_json_atomically


def test_write_atomically_goes_through_a_hidden_temporary_file(tmp_path):
    target = tmp_path / "a.txt"
    seen = []

    def write(tmp):
        seen.append(tmp)
        assert not target.exists()  # the real name appears only once the write is done
        tmp.write_text("hello")

    write_atomically(target, write)
    assert seen == [tmp_path / ".a.txt.tmp"]
    assert target.read_text() == "hello"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_failed_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")

    def write(tmp):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomically(target, write)
    assert target.read_text() == "old"


def test_write_json_atomically(tmp_path):
    target = tmp_path / "m.json"
    write_json_atomically(target, {"b": [1, 2], "a": None})
    assert target.read_text() == json.dumps({"b": [1, 2], "a": None}, indent=1)
    assert not (tmp_path / ".m.json.tmp").exists()


def test_remove_stale_files_keeps_listed_names_and_other_extensions(tmp_path):
    for name in ("000.png", "001.png", "002.png", "notes.txt"):
        (tmp_path / name).write_text("x")
    remove_stale_files(tmp_path, ".png", {"000.png", "002.png"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000.png", "002.png", "notes.txt"]
