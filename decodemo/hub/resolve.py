"""Where an entry's weights come from: the bundled folder, then the local Hugging Face cache, then a
download of exactly the pinned files at the pinned revision; verified after each (the SHA-256 of
every pinned file, no pickle files, no symbolic links in a bundled folder)."""

from __future__ import annotations

from pathlib import Path

from decodemo.errors import IntegrityError
from decodemo.hub.manifest import CHECKPOINTS, Entry, HubSource, ModelUnavailableError, file_sha256, folder_listing


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _wanted(entry: Entry) -> list[str]:
    """The files fetched from the Hub: every pinned one (``config.json`` too, for an earlier manifest)."""
    return sorted({"config.json", *entry.pinned()})


def _patterns(hub: HubSource, names: list[str]) -> list[str]:
    prefix = f"{hub.subfolder.strip('/')}/" if hub.subfolder else ""
    return [prefix + f for f in names]


def _snapshot(entry: Entry, *, local_only: bool, cache_dir=None, endpoint=None) -> Path:
    from huggingface_hub import snapshot_download

    hub = entry.hub
    names = _wanted(entry)
    path = snapshot_download(hub.repo_id, revision=hub.revision, allow_patterns=_patterns(hub, names),
                             cache_dir=cache_dir, endpoint=endpoint, local_files_only=local_only)
    folder = Path(path) / (hub.subfolder or "")
    absent = [n for n in names if not (folder / n).is_file()]
    if absent:
        raise FileNotFoundError(f"{hub.repo_id}@{hub.revision[:8]} has no {' + '.join(absent)}"
                                + (f" in {hub.subfolder}" if hub.subfolder else ""))
    return folder


def verify(entry: Entry, folder: Path, *, root: str | Path | None = None) -> Path:
    """:func:`verified_config` without the config: ``folder`` if it is what ``entry`` pins."""
    verified_config(entry, folder, root=root)
    return folder


def verified_config(entry: Entry, folder: Path, *, root: str | Path | None = None, snapshot: bool = False) -> dict:
    """Check ``folder`` against ``entry`` and return its ``config.json`` (read once, here).

    Refused (a typed error naming the file): pickle weights; a symbolic link for the folder, a
    part of its path under ``root`` (the checkpoints root or a user registry's folder) or a file
    in it; a folder that resolves outside ``root``; a pinned file missing or with another SHA-256;
    and, where the entry pins ``files``, any file the manifest does not pin. An entry of a
    manifest written before ``files`` existed pins only ``model.safetensors`` (its ``sha256``):
    that file is verified, its other files (``config.json`` included) cannot be.

    ``snapshot``: ``folder`` is a Hugging Face cache snapshot, whose files are links into the
    cache's blobs by design and which the cache may share with other downloads of the repository;
    there the pinned files are verified by content and other files are ignored (never opened).
    """
    from decodemo.methods.base import read_config

    folder = Path(folder)
    if root is not None:
        _check_contained(entry, folder, Path(root))
    present = None if snapshot else set(folder_listing(folder))  # refuses links and special files
    config = read_config(folder)  # refuses folders with pickle files, checks config.json
    if present is not None:
        _check_exact(entry, folder, present)
    _check_hashes(entry, folder)
    return config


def _check_contained(entry: Entry, folder: Path, root: Path) -> None:
    """No part of ``folder`` below ``root`` is a symbolic link, and it resolves inside ``root``."""
    try:
        rel = folder.relative_to(root)
    except ValueError:
        raise IntegrityError(f"{entry.name}: {folder} is not under {root}.") from None
    p = root
    for part in rel.parts:
        p = p / part
        if p.is_symlink():
            raise IntegrityError(f"{entry.name}: {p} is a symbolic link; a bundled folder must be a real folder "
                                 f"under {root} (links are not followed).")
    if not folder.resolve().is_relative_to(root.resolve()):
        raise IntegrityError(f"{entry.name}: {folder} resolves outside {root}; refusing to load it.")


def _check_exact(entry: Entry, folder: Path, present: set[str]) -> None:
    """With ``files`` pinned, ``folder`` holds exactly the pinned files (``present``), no others."""
    if not entry.files:
        return
    extra = sorted(present - set(entry.files))
    if extra:
        raise IntegrityError(f"{entry.name}: {folder} holds {extra[0]!r}, which the manifest does not pin; a model "
                             f"folder holds exactly its pinned files ({', '.join(entry.files)}). Remove it, or "
                             "register the folder again.")
    missing = sorted(set(entry.files) - present)
    if missing:
        raise IntegrityError(f"{entry.name}: {folder} lacks {missing[0]!r}, which the manifest pins.")


def _check_hashes(entry: Entry, folder: Path) -> None:
    """Every pinned file has its pinned SHA-256 (and ``model.safetensors`` the entry's ``sha256``)."""
    for rel, want in sorted(entry.pinned().items()):
        path = folder / rel
        if not path.is_file():
            raise IntegrityError(f"{entry.name}: {folder} has no {rel}, which the manifest pins.")
        got = file_sha256(path)
        for pinned in (want, entry.sha256) if rel == "model.safetensors" else (want,):
            if got != pinned:
                raise IntegrityError(f"{entry.name}: {rel} in {folder} does not match the manifest (SHA-256 "
                                     f"{got[:12]}..., pinned {pinned[:12]}...). Refusing to load the folder; "
                                     "register it again if the change is meant.")


def resolve(entry: Entry, *, root: str | Path = CHECKPOINTS, cache_dir=None, endpoint=None) -> tuple[Path, str]:
    """-> (verified folder, source) with source ``bundled``, ``cache`` or ``hub``."""
    folder, source, _ = resolve_verified(entry, root=root, cache_dir=cache_dir, endpoint=endpoint)
    return folder, source


def resolve_verified(entry: Entry, *, root: str | Path = CHECKPOINTS, cache_dir=None,
                     endpoint=None) -> tuple[Path, str, dict]:
    """-> (verified folder, source, its ``config.json``): the config is read once, when verified."""
    if entry.bundled and _bundled_here(Path(root) / entry.bundled):
        folder = Path(root) / entry.bundled
        return folder, "bundled", verified_config(entry, folder, root=root)
    if entry.hub is None:
        raise ModelUnavailableError(f"{entry.name}: its bundled folder {entry.bundled!r} is missing and it has no "
                                    f"Hub source.")
    hub = entry.hub
    try:
        cached = _snapshot(entry, local_only=True, cache_dir=cache_dir, endpoint=endpoint)
        return cached, "cache", verified_config(entry, cached, snapshot=True)
    except (OSError, ValueError) as exc:
        if not _is_missing(exc):
            raise
    if _offline():
        raise ModelUnavailableError(f"{entry.name}: not bundled and not in the Hugging Face cache, and HF_HUB_OFFLINE "
                                    f"is set; download {hub.repo_id}@{hub.revision[:8]} once with a network.")
    try:
        folder = _snapshot(entry, local_only=False, cache_dir=cache_dir, endpoint=endpoint)
    except Exception as exc:  # network errors, missing repo / revision / files
        raise ModelUnavailableError(f"{entry.name}: could not download {hub.repo_id}@{hub.revision[:8]}: "
                                    f"{type(exc).__name__}: {exc}") from exc
    return folder, "hub", verified_config(entry, folder, snapshot=True)


def _bundled_here(folder: Path) -> bool:
    """Whether a bundled folder is present (then it is verified, and refused if it fails, rather
    than silently replaced by a Hub copy); a link counts as present, to be refused."""
    config = folder / "config.json"
    return folder.is_symlink() or config.is_file() or config.is_symlink()


def _is_missing(exc: Exception) -> bool:
    from huggingface_hub.errors import LocalEntryNotFoundError

    return isinstance(exc, (LocalEntryNotFoundError, FileNotFoundError)) or "local" in type(exc).__name__.lower()


def where(entry: Entry, *, root: str | Path = CHECKPOINTS, cache_dir=None) -> str:
    """Where ``entry`` would load from now, without downloading: bundled / cache / hub / unavailable."""
    if entry.bundled and _bundled_here(Path(root) / entry.bundled):
        return f"bundled ({entry.bundled})"
    if entry.hub is None:
        return "unavailable (bundled folder missing, no Hub source)"
    try:
        _snapshot(entry, local_only=True, cache_dir=cache_dir)
        return f"cache ({entry.hub.repo_id}@{entry.hub.revision[:8]})"
    except Exception:  # noqa: BLE001 - anything but a cached snapshot means "not cached"
        pass
    if _offline():
        return f"unavailable offline ({entry.hub.repo_id}@{entry.hub.revision[:8]} not cached)"
    return f"hub download ({entry.hub.repo_id}@{entry.hub.revision[:8]})"


