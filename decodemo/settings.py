"""Every setting decodemo reads from the environment, in one place, with its default.

Each is read when it is asked for (not at import), so a process, or a test, that sets a variable
before the call gets its value.

| variable | what it sets | default |
|---|---|---|
| ``DECODEMO_DATA_DIR`` | where the database, uploads, results and examples live | ``$XDG_DATA_HOME/decodemo``, else ``~/.local/share/decodemo`` |
| ``DECODEMO_DB_URL`` | the review database (any SQLAlchemy URL, e.g. PostgreSQL) | SQLite in the data directory |
| ``DECODEMO_DEVICE`` | ``cpu``, ``cuda`` or ``cuda:N`` | CUDA when present, else the CPU |
| ``DECODEMO_MAX_MODELS`` | models kept in memory at once (least recently used first out) | 32 |
| ``DECODEMO_FPR_TARGET`` | the false-positive target of ``calibrate`` and ``fit`` thresholds | ``0.01`` |
| ``DECODEMO_MIN_REVIEWED`` | reviewed normals and anomalies (each) a suggested threshold needs | ``10`` |
| ``DECODEMO_AUTH`` | ``user:password`` pairs, comma-separated, for the app's login (a comma inside a password stays in it when the text after it holds no ``:``) | none |
| ``DECODEMO_AUTH_FILE`` | a file of ``user:password`` lines (any characters in a password) | none |
| ``DECODEMO_ADMINS`` | login names (comma-separated) that may apply thresholds | none |
| ``DECODEMO_OPEN_THRESHOLDS`` | ``1``: anyone may apply thresholds (a single-person app without login) | off |
| ``DECODEMO_RESULTS_MB`` | memory for the results kept for redraws (oldest out first) | ``256`` |
| ``DECODEMO_CACHE_HOURS`` | age after which temporary result and upload files are deleted | ``6`` |
| ``GRADIO_SERVER_NAME``, ``GRADIO_SERVER_PORT`` | where the app listens | ``127.0.0.1``, ``7860`` |
| ``OAUTH_CLIENT_ID`` | set on a Space with ``hf_oauth``: reviewers sign in with Hugging Face | unset |
| ``SPACE_AUTHOR_NAME`` | set on a Space: its owner, an admin under Hugging Face sign-in | unset |
| ``SPACES_ZERO_GPU`` | set on a ZeroGPU Space: GPU work runs in ``spaces.GPU`` | unset |
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["MAX_MODELS", "data_dir", "user_registry", "db_url", "device", "max_models", "auth_pairs", "parse_auth",
           "server_name", "server_port", "hf_oauth", "zero_gpu", "fpr_target", "min_reviewed", "results_bytes",
           "cache_hours", "admins", "open_thresholds", "space_owner"]

#: Models kept in memory at once: every bundled model (28 names, 27 folders) stays resident after warm-up.
MAX_MODELS = 32


def _get(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def data_dir() -> Path:
    """Where decodemo keeps its files."""
    if _get("DECODEMO_DATA_DIR"):
        return Path(_get("DECODEMO_DATA_DIR")).expanduser()
    base = _get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "decodemo"


def user_registry() -> Path:
    """The user registry that ``python -m decodemo fit`` writes and the app reads beside the
    bundled one: ``<data dir>/models/registry.json``."""
    return data_dir() / "models" / "registry.json"


def db_url() -> str:
    """The database URL given in the environment, or ``""`` (then SQLite in :func:`data_dir`)."""
    return _get("DECODEMO_DB_URL")


def device() -> str:
    """The device asked for (lower case), or ``""`` (then the best one present)."""
    return _get("DECODEMO_DEVICE").lower()


def max_models() -> int:
    return int(_get("DECODEMO_MAX_MODELS") or MAX_MODELS)


def parse_auth(text: str) -> list[tuple[str, str]]:
    """``user:password`` pairs from comma-separated text. A piece without ``:`` belongs to the
    password before it (``ana:a,b,bo:c`` is ana with ``a,b`` and bo with ``c``); a password
    holding ``,x:`` cannot be written this way: use :func:`auth_pairs`' file instead."""
    pairs: list[list[str]] = []
    for piece in text.split(","):
        if ":" in piece and piece.split(":", 1)[0].strip():
            user, pw = piece.split(":", 1)
            pairs.append([user.strip(), pw])
        elif pairs:
            pairs[-1][1] += "," + piece
        elif piece.strip():
            raise ValueError("DECODEMO_AUTH must be user:password pairs, comma-separated.")
    return [(u, p) for u, p in pairs]


def auth_pairs() -> list[tuple[str, str]]:
    """The logins of ``DECODEMO_AUTH`` and of ``DECODEMO_AUTH_FILE`` (one ``user:password`` a line;
    blank lines and ``#`` comments skipped)."""
    pairs = parse_auth(os.environ.get("DECODEMO_AUTH", "").strip())
    path = _get("DECODEMO_AUTH_FILE")
    if path:
        for line in Path(path).expanduser().read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                if ":" not in line:
                    raise ValueError(f"{path}: each line must be user:password.")
                user, pw = line.split(":", 1)
                pairs.append((user.strip(), pw))
    return pairs


def server_name() -> str:
    return _get("GRADIO_SERVER_NAME") or "127.0.0.1"


def server_port() -> int:
    return int(_get("GRADIO_SERVER_PORT") or 7860)


def hf_oauth() -> bool:
    return bool(_get("OAUTH_CLIENT_ID"))


def zero_gpu() -> bool:
    return bool(_get("SPACES_ZERO_GPU"))


def fpr_target() -> float:
    """The false-positive target of calibrated thresholds (:mod:`decodemo.metrics.calibration`)."""
    return float(_get("DECODEMO_FPR_TARGET") or 0.01)


def min_reviewed() -> int:
    """Reviewed normals and reviewed anomalies (each) the dashboard's suggested threshold needs."""
    return int(_get("DECODEMO_MIN_REVIEWED") or 10)


def results_bytes() -> int:
    """Bytes of results the app keeps in memory for redraws."""
    return int(float(_get("DECODEMO_RESULTS_MB") or 256) * 2**20)


def cache_hours() -> float:
    """Age (hours) after which temporary result files, exports and Gradio's upload cache go."""
    return float(_get("DECODEMO_CACHE_HOURS") or 6)


def admins() -> list[str]:
    """The login names of ``DECODEMO_ADMINS`` (comma-separated): they may apply thresholds."""
    return [n.strip() for n in _get("DECODEMO_ADMINS").split(",") if n.strip()]


def open_thresholds() -> bool:
    """``DECODEMO_OPEN_THRESHOLDS`` is ``1``, ``true`` or ``yes``: anyone may apply thresholds."""
    return _get("DECODEMO_OPEN_THRESHOLDS").lower() in ("1", "true", "yes")


def space_owner() -> str:
    """The Space's owner (``SPACE_AUTHOR_NAME``), or ``""`` outside a Space."""
    return _get("SPACE_AUTHOR_NAME")
