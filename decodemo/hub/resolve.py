"""Where an entry's weights come from: the bundled folder, then the local Hugging Face cache, then a
download of exactly ``config.json`` and ``model.safetensors`` at the pinned revision; verified
after each (SHA-256, no pickle files)."""

from __future__ import annotations

from pathlib import Path

from decodemo.errors import ModelError, UnsafeWeightsError
from decodemo.hub.manifest import CHECKPOINTS, Entry, HubSource, ModelUnavailableError, WEIGHT_FILES, file_sha256


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _patterns(hub: HubSource) -> list[str]:
    prefix = f"{hub.subfolder.strip('/')}/" if hub.subfolder else ""
    return [prefix + f for f in WEIGHT_FILES]


def _snapshot(hub: HubSource, *, local_only: bool, cache_dir=None, endpoint=None) -> Path:
    from huggingface_hub import snapshot_download

    path = snapshot_download(hub.repo_id, revision=hub.revision, allow_patterns=_patterns(hub), cache_dir=cache_dir,
                             endpoint=endpoint, local_files_only=local_only)
    folder = Path(path) / (hub.subfolder or "")
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"{hub.repo_id}@{hub.revision[:8]} has no config.json + model.safetensors"
                                + (f" in {hub.subfolder}" if hub.subfolder else ""))
    return folder


def verify(entry: Entry, folder: Path) -> Path:
    """Refuse pickle weights and check the SHA-256 of ``model.safetensors`` against the manifest."""
    verified_config(entry, folder)
    return folder


def verified_config(entry: Entry, folder: Path) -> dict:
    """:func:`verify` ``folder`` and return its ``config.json`` (read once, here)."""
    from decodemo.methods.base import read_config

    config = read_config(folder)  # refuses folders with pickle files, checks config.json
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise ModelError(f"{entry.name}: {folder} has no model.safetensors.")
    got = file_sha256(weights)
    if got != entry.sha256:
        raise UnsafeWeightsError(f"{entry.name}: the weights in {folder} do not match the manifest "
                                 f"(SHA-256 {got[:12]}..., expected {entry.sha256[:12]}...). Refusing to load them.")
    return config


def resolve(entry: Entry, *, root: str | Path = CHECKPOINTS, cache_dir=None, endpoint=None) -> tuple[Path, str]:
    """-> (verified folder, source) with source ``bundled``, ``cache`` or ``hub``."""
    folder, source, _ = resolve_verified(entry, root=root, cache_dir=cache_dir, endpoint=endpoint)
    return folder, source


def resolve_verified(entry: Entry, *, root: str | Path = CHECKPOINTS, cache_dir=None,
                     endpoint=None) -> tuple[Path, str, dict]:
    """-> (verified folder, source, its ``config.json``): the config is read once, when verified."""
    if entry.bundled:
        folder = Path(root) / entry.bundled
        if (folder / "config.json").is_file():
            return folder, "bundled", verified_config(entry, folder)
    if entry.hub is None:
        raise ModelUnavailableError(f"{entry.name}: its bundled folder {entry.bundled!r} is missing and it has no "
                                    f"Hub source.")
    hub = entry.hub
    try:
        cached = _snapshot(hub, local_only=True, cache_dir=cache_dir, endpoint=endpoint)
        return cached, "cache", verified_config(entry, cached)
    except (OSError, ValueError) as exc:
        if not _is_missing(exc):
            raise
    if _offline():
        raise ModelUnavailableError(f"{entry.name}: not bundled and not in the Hugging Face cache, and HF_HUB_OFFLINE "
                                    f"is set; download {hub.repo_id}@{hub.revision[:8]} once with a network.")
    try:
        folder = _snapshot(hub, local_only=False, cache_dir=cache_dir, endpoint=endpoint)
    except Exception as exc:  # network errors, missing repo / revision / files
        raise ModelUnavailableError(f"{entry.name}: could not download {hub.repo_id}@{hub.revision[:8]}: "
                                    f"{type(exc).__name__}: {exc}") from exc
    return folder, "hub", verified_config(entry, folder)


def _is_missing(exc: Exception) -> bool:
    from huggingface_hub.errors import LocalEntryNotFoundError

    return isinstance(exc, (LocalEntryNotFoundError, FileNotFoundError)) or "local" in type(exc).__name__.lower()


def where(entry: Entry, *, root: str | Path = CHECKPOINTS, cache_dir=None) -> str:
    """Where ``entry`` would load from now, without downloading: bundled / cache / hub / unavailable."""
    if entry.bundled and (Path(root) / entry.bundled / "config.json").is_file():
        return f"bundled ({entry.bundled})"
    if entry.hub is None:
        return "unavailable (bundled folder missing, no Hub source)"
    try:
        _snapshot(entry.hub, local_only=True, cache_dir=cache_dir)
        return f"cache ({entry.hub.repo_id}@{entry.hub.revision[:8]})"
    except Exception:  # noqa: BLE001 - anything but a cached snapshot means "not cached"
        pass
    if _offline():
        return f"unavailable offline ({entry.hub.repo_id}@{entry.hub.revision[:8]} not cached)"
    return f"hub download ({entry.hub.repo_id}@{entry.hub.revision[:8]})"


