"""Temporary files of a running app: where they go, and their removal on a schedule and at exit.

Each app process writes the files it hands out (map ``.npy`` and normal-version ``.png`` of a
result, batch work folders, exports) under its own folder, ``<tmp>/decodemo-results/<pid>-<id>``
(:func:`results_dir`). A background sweep (:func:`start_sweeper`) removes, every quarter of
``DECODEMO_CACHE_HOURS``, whatever there (any process's, so a crashed process's leftovers go too)
is older than ``DECODEMO_CACHE_HOURS``; at exit the process removes its own folder. Gradio's own
upload cache is swept by ``gr.Blocks(delete_cache=...)`` with the same age.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

__all__ = ["results_root", "results_dir", "sweep", "start_sweeper"]

_OWN: Path | None = None
_LOCK = threading.Lock()
_SWEEPER: threading.Thread | None = None


def results_root() -> Path:
    """``<tmp>/decodemo-results``: every app process's folder lies here."""
    return Path(tempfile.gettempdir()) / "decodemo-results"


def results_dir() -> Path:
    """This process's folder for the files it hands out (made on first use, removed at exit)."""
    global _OWN
    with _LOCK:
        if _OWN is None or not _OWN.is_dir():
            _OWN = results_root() / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
            _OWN.mkdir(parents=True, exist_ok=True)
            atexit.register(shutil.rmtree, _OWN, True)
        return _OWN


def _age(path: Path, now: float) -> float:
    try:
        return now - path.stat().st_mtime
    except OSError:
        return 0.0


def sweep(root: Path | None = None, max_age_s: float | None = None, *, now: float | None = None) -> int:
    """Remove the entries two levels down ``root`` (default :func:`results_root`: each process's
    results, work folders and exports) older than ``max_age_s`` (default ``DECODEMO_CACHE_HOURS``),
    and process folders left empty; returns how many entries went."""
    from decodemo import settings

    root = results_root() if root is None else Path(root)
    max_age_s = settings.cache_hours() * 3600.0 if max_age_s is None else float(max_age_s)
    now = time.time() if now is None else now
    removed = 0
    if not root.is_dir():
        return 0
    for proc in list(root.iterdir()):
        if not proc.is_dir() or proc.is_symlink():
            continue
        proc_age = _age(proc, now)  # before its entries go (removing them touches the folder)
        for entry in list(proc.iterdir()):
            if _age(entry, now) > max_age_s:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                removed += 1
        if proc != _OWN and proc_age > max_age_s and not any(proc.iterdir()):
            shutil.rmtree(proc, ignore_errors=True)
    return removed


def start_sweeper(interval_s: float | None = None) -> threading.Thread:
    """Start (once per process) the daemon thread that calls :func:`sweep` every ``interval_s``
    (default a quarter of ``DECODEMO_CACHE_HOURS``)."""
    from decodemo import settings

    global _SWEEPER
    with _LOCK:
        if _SWEEPER is not None and _SWEEPER.is_alive():
            return _SWEEPER
        every = max(1.0, settings.cache_hours() * 900.0 if interval_s is None else float(interval_s))

        def run() -> None:
            while True:
                time.sleep(every)
                try:
                    sweep()
                except OSError:  # a file in use or gone: the next sweep tries again
                    pass

        _SWEEPER = threading.Thread(target=run, name="decodemo-sweeper", daemon=True)
        _SWEEPER.start()
        return _SWEEPER
