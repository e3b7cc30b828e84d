"""Helpers of the dataset builders (elpv, fan, synthetic) for writing files safely.

A builder writes each file through a hidden temporary file that is renamed into place, so
an interrupted build never leaves a half-written file under its real name, and removes
what an earlier build left in its folders. Standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["write_atomically", "write_json_atomically", "remove_stale_files"]


def write_atomically(path: Path, write: Callable[[Path], Any]) -> None:
    """Write ``path`` through a hidden temporary file next to it (``.<name>.tmp``).

    ``write(tmp)`` writes the temporary file, which is then renamed onto ``path``, so a
    reader (or a resumed build) never finds a half-written file under the real name.
    """
    tmp = path.parent / f".{path.name}.tmp"
    write(tmp)
    tmp.replace(path)


def write_json_atomically(path: Path, data: Any) -> None:
    """Write ``data`` as JSON (``indent=1``) to ``path`` with :func:`write_atomically`."""
    write_atomically(path, lambda tmp: tmp.write_text(json.dumps(data, indent=1)))


def remove_stale_files(folder: Path, ext: str, keep: set[str]) -> None:
    """Delete the files ``folder/*<ext>`` whose names are not in ``keep`` (an earlier build's)."""
    for p in folder.glob(f"*{ext}"):
        if p.name not in keep:
            p.unlink()
