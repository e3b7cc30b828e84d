"""Temporary files of the app: swept when older than DECODEMO_CACHE_HOURS, the process's own at exit."""

from __future__ import annotations

import os
import time

from decodemo.app import cleanup


def test_sweep_removes_old_entries_of_every_process_and_keeps_new_ones(tmp_path):
    now = time.time()
    old_proc, live_proc = tmp_path / "123-dead", tmp_path / "456-live"
    for d in (old_proc / "result-a", live_proc / "result-b", live_proc / "result-c"):
        d.mkdir(parents=True)
        (d / "decodiff_map.npy").write_bytes(b"x" * 100)
    (live_proc / "export.zip").write_bytes(b"z")
    for p in (old_proc / "result-a", live_proc / "result-b", live_proc / "export.zip", old_proc):
        os.utime(p, (now - 7 * 3600, now - 7 * 3600))
    removed = cleanup.sweep(tmp_path, 6 * 3600, now=now)
    assert removed == 3
    assert sorted(p.name for p in live_proc.iterdir()) == ["result-c"]
    assert not old_proc.exists()  # a crashed process's emptied folder goes too
    assert cleanup.sweep(tmp_path / "missing", 1.0) == 0


def test_the_process_folder_is_its_own_and_reused(monkeypatch, tmp_path):
    monkeypatch.setattr(cleanup.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(cleanup, "_OWN", None)
    a = cleanup.results_dir()
    assert a.parent == tmp_path / "decodemo-results" and a.name.startswith(f"{os.getpid()}-")
    assert cleanup.results_dir() == a and a.is_dir()
