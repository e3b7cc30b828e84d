"""The registry manifest (``checkpoints/registry.json``): its entries, validated on load, and the
SHA-256 of every file of each model folder. A broken entry is named with the field at fault.

Format (``version`` 1, extended compatibly): ``{"version": 1, "models": {name: entry},
"domains": {domain: {"files": {relative name: sha256}}}}``. An entry pins ``files``, the SHA-256
of every file of its folder (``config.json``, ``model.safetensors`` and any other), and keeps
``sha256`` (of ``model.safetensors``) for readers of earlier versions. ``domains`` pins the files
of each in-domain reference folder ``<root>/<domain>/domain`` (checked by :mod:`decodemo.ood`).
Manifests written before ``files`` existed still load: for them only ``model.safetensors`` is
verified (see :func:`decodemo.hub.resolve.verified_config`)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import PurePosixPath, PureWindowsPath
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from decodemo.errors import IntegrityError, ModelError
from decodemo.methods.catalogue import DETECTORS


CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"
MANIFEST = CHECKPOINTS / "registry.json"
WEIGHT_FILES = ("config.json", "model.safetensors")
#: Where a domain's in-domain reference lives in a registry root: ``<root>/<domain>/domain``
#: (the same as ``decodemo.ood.REFERENCE_FOLDER``; the two layers cannot import each other).
DOMAIN_FOLDER = "domain"
_SHA1 = re.compile(r"^[0-9a-f]{40}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
METHODS = DETECTORS  # the three diffusion methods and the nearest-neighbour reference


class RegistryError(ModelError):
    """The manifest is broken: the message names the entry and the field."""


class ModelUnavailableError(ModelError):
    """An entry's weights cannot be had here (not bundled, not cached, and no download possible)."""


@dataclass(frozen=True)
class HubSource:
    repo_id: str
    revision: str  # a 40-hex commit
    subfolder: str | None = None


@dataclass
class Entry:
    name: str
    method: str
    modality: str
    domain: str
    class_id: str | None
    threshold: float
    threshold_provenance: str
    sha256: str  # of model.safetensors (kept for manifests and readers of earlier versions)
    bundled: str | None = None
    hub: HubSource | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    input: dict[str, Any] = field(default_factory=dict)
    training_data: str = ""
    licence: str = ""
    paper: str = ""
    #: normal reference (decodemo.evaluation.reference): scores and map quantiles on normal inputs
    reference: dict[str, Any] = field(default_factory=dict)
    #: how the threshold was calibrated (decodemo.metrics.calibration.describe with its target):
    #: the false-positive target, the reference's size, the guarantee and its interval
    calibration: dict[str, Any] = field(default_factory=dict)
    #: relative name -> SHA-256 of every file of the model folder; empty in manifests written
    #: before it existed (then only ``sha256`` is verified)
    files: dict[str, str] = field(default_factory=dict)

    def pinned(self) -> dict[str, str]:
        """The files this entry pins: ``files``, or (an earlier manifest) ``model.safetensors`` alone."""
        return dict(self.files) if self.files else {"model.safetensors": self.sha256}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("name")
        return d


def _fail(where: str, name: str, fld: str, msg: str) -> RegistryError:
    return RegistryError(f"{where}: entry {name!r}, field {fld!r}: {msg}")


def _entry(name: str, raw: Any, where: str) -> Entry:
    if not isinstance(raw, dict):
        raise RegistryError(f"{where}: entry {name!r} must be an object, got {type(raw).__name__}.")

    def need(fld: str, kind: type | tuple, *, optional: bool = False) -> Any:
        if fld not in raw or raw[fld] is None:
            if optional:
                return None
            raise _fail(where, name, fld, "missing")
        val = raw[fld]
        if not isinstance(val, kind) or isinstance(val, bool):
            raise _fail(where, name, fld, f"expected {getattr(kind, '__name__', kind)}, got {type(val).__name__}")
        return val

    known = {f for f in Entry.__dataclass_fields__ if f != "name"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise _fail(where, name, unknown[0], "unknown field")
    method = need("method", str)
    if method not in METHODS:
        raise _fail(where, name, "method", f"{method!r} is not one of {METHODS}")
    modality = need("modality", str)
    if modality not in ("image", "audio"):
        raise _fail(where, name, "modality", f"{modality!r} is not 'image' or 'audio'")
    threshold = need("threshold", (int, float))
    if not math.isfinite(threshold):
        raise _fail(where, name, "threshold", "must be finite")
    sha = need("sha256", str)
    if not _SHA256.match(sha):
        raise _fail(where, name, "sha256", "must be 64 lowercase hex digits (SHA-256 of model.safetensors)")
    bundled = need("bundled", str, optional=True)
    if bundled is not None and not _relative_name(bundled):
        raise _fail(where, name, "bundled", "must be a folder relative to checkpoints/ (no '..', not absolute)")
    raw_hub = need("hub", dict, optional=True)
    hub = None if raw_hub is None else _hub(name, raw_hub, where)
    files = _files(name, need("files", dict, optional=True) or {}, sha, where)
    if bundled is None and hub is None:
        raise _fail(where, name, "bundled", "an entry needs a bundled folder or a Hub source")
    return Entry(
        name=name, method=method, modality=modality, domain=need("domain", str),
        class_id=need("class_id", str, optional=True), threshold=float(threshold),
        threshold_provenance=need("threshold_provenance", str), sha256=sha, bundled=bundled, hub=hub,
        figures=need("figures", dict, optional=True) or {}, input=need("input", dict, optional=True) or {},
        training_data=need("training_data", str, optional=True) or "",
        licence=need("licence", str, optional=True) or "", paper=need("paper", str, optional=True) or "",
        reference=_reference(name, need("reference", dict, optional=True) or {}, where),
        calibration=need("calibration", dict, optional=True) or {}, files=files,
    )


def _relative_name(name: str) -> bool:
    """Whether ``name`` is a plain relative path (``a/b.json``): not empty, not absolute (POSIX or
    Windows), no ``..`` or ``.`` part, no backslash, no empty part. Such a name stays inside the
    folder it is joined to."""
    if not name or "\\" in name or "\0" in name:
        return False
    parts = name.split("/")
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).drive or PureWindowsPath(name).is_absolute():
        return False
    return all(p not in ("", ".", "..") for p in parts)


def _hub(name: str, raw: dict[str, Any], where: str) -> HubSource:
    """A Hub source: ``repo_id`` in the Hub's own format, ``revision`` a 40-hex commit, and an
    optional ``subfolder`` that stays inside the repository."""
    for fld in ("repo_id", "revision"):
        if not isinstance(raw.get(fld), str) or not raw[fld]:
            raise _fail(where, name, f"hub.{fld}", "missing")
    extra = sorted(set(raw) - {"repo_id", "revision", "subfolder"})
    if extra:
        raise _fail(where, name, f"hub.{extra[0]}", "unknown field")
    problem = repo_id_problem(raw["repo_id"])
    if problem:
        raise _fail(where, name, "hub.repo_id", problem)
    if not _SHA1.match(raw["revision"]):
        raise _fail(where, name, "hub.revision", "must be pinned to a 40-hex commit, not a branch or tag")
    sub = raw.get("subfolder")
    if sub is not None and not isinstance(sub, str):
        raise _fail(where, name, "hub.subfolder", f"expected str, got {type(sub).__name__}")
    if sub and not _relative_name(sub.rstrip("/")):
        raise _fail(where, name, "hub.subfolder", f"{sub!r} must be a folder inside the repository (relative, "
                                                  "no '..', not absolute)")
    sub = (sub or "").rstrip("/") or None
    return HubSource(raw["repo_id"], raw["revision"], sub)


def repo_id_problem(repo_id: str) -> str | None:
    """Why ``repo_id`` is not a Hugging Face Hub repository id (``name`` or ``owner/name``), or None.
    The Hub client's own check (``huggingface_hub.utils.validate_repo_id``) decides."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        return f"{repo_id!r} is not a Hub repository id ('owner/name'): {' '.join(str(exc).split())}"
    return None


def _files(name: str, raw: dict[str, Any], sha: str, where: str) -> dict[str, str]:
    """The ``files`` pins: relative names (no ``..``, not absolute) -> 64-hex SHA-256, with
    ``config.json`` and ``model.safetensors`` among them, the latter equal to ``sha256``."""
    if not raw:
        return {}
    for rel, digest in raw.items():
        if not _relative_name(rel):
            raise _fail(where, name, "files", f"{rel!r} must be a relative file name inside the model folder "
                                              "(no '..', not absolute)")
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise _fail(where, name, f"files.{rel}", "must be 64 lowercase hex digits (the file's SHA-256)")
    missing = [f for f in WEIGHT_FILES if f not in raw]
    if missing:
        raise _fail(where, name, "files", f"must pin {missing[0]} (every model folder has {' and '.join(WEIGHT_FILES)})")
    if raw["model.safetensors"] != sha:
        raise _fail(where, name, "files.model.safetensors", "differs from 'sha256'; both are the SHA-256 of "
                                                            "model.safetensors")
    return dict(sorted(raw.items()))


def _reference(name: str, ref: dict[str, Any], where: str) -> dict[str, Any]:
    if not ref:
        return {}
    scores = ref.get("scores")
    if (not isinstance(scores, list) or not scores
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in scores)):
        raise _fail(where, name, "reference.scores", "must be a non-empty list of finite numbers")
    pq = ref.get("pixel_quantiles")
    if pq is not None:
        if (not isinstance(pq, dict) or not isinstance(pq.get("q"), list) or not isinstance(pq.get("v"), list)
                or len(pq["q"]) != len(pq["v"]) or len(pq["q"]) < 2):
            raise _fail(where, name, "reference.pixel_quantiles", "must hold lists q and v of the same length (>= 2)")
        if any(b <= a for a, b in zip(pq["q"], pq["q"][1:])):
            raise _fail(where, name, "reference.pixel_quantiles.q", "must increase")
    return ref


def _read(path: Path) -> dict[str, Any]:
    """The manifest at ``path`` as JSON with a ``models`` object (else :class:`RegistryError`)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise RegistryError(f"No model manifest at {path}.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegistryError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise RegistryError(f"{path}: expected an object with a 'models' object.")
    return data


def load_manifest(path: str | Path = MANIFEST, *, broken: dict[str, str] | None = None) -> dict[str, Entry]:
    """Read and validate a manifest -> ``{name: Entry}`` (in file order).

    Strict by default: one invalid entry raises :class:`RegistryError` for the whole manifest
    (what a command that rewrites the manifest wants). With ``broken`` (a dict), an invalid entry
    is left out and ``broken[name]`` gets its reason in one line, so that the app still serves
    the others. A file that is not a manifest at all (missing, not JSON, no ``models``) raises
    either way."""
    path = Path(path)
    data = _read(path)
    out: dict[str, Entry] = {}
    for name, raw in data["models"].items():
        try:
            out[name] = _entry(name, raw, str(path))
        except RegistryError as exc:
            if broken is None:
                raise
            broken[name] = " ".join(str(exc).split())
    return out


def load_domains(path: str | Path = MANIFEST) -> dict[str, dict[str, str]]:
    """The manifest's ``domains`` section -> ``{domain: {relative name: sha256}}``, validated
    (``{}`` for a manifest without one, as every manifest before it)."""
    path = Path(path)
    raw = _read(path).get("domains") or {}
    if not isinstance(raw, dict):
        raise RegistryError(f"{path}: 'domains' must be an object of domain -> {{'files': {{name: sha256}}}}.")
    out = {}
    for domain, pins in raw.items():
        files = pins.get("files") if isinstance(pins, dict) else None
        if not isinstance(files, dict) or not files or set(pins) != {"files"}:
            raise RegistryError(f"{path}: domain {domain!r} must be {{'files': {{name: sha256}}}}, non-empty.")
        for rel, digest in files.items():
            if not _relative_name(rel) or not isinstance(digest, str) or not _SHA256.match(digest):
                raise RegistryError(f"{path}: domain {domain!r}, file {rel!r}: expected a relative name (no '..') "
                                    "and 64 lowercase hex digits.")
        out[domain] = dict(sorted(files.items()))
    return out


def save_manifest(entries: dict[str, Entry], path: str | Path = MANIFEST, *,
                  domains: dict[str, dict[str, str]] | None = None) -> None:
    """Write ``entries`` to ``path``. The ``domains`` pins are kept as the file at ``path`` has
    them unless ``domains`` is given: saving entries never re-pins (or drops) a domain folder."""
    path = Path(path)
    if domains is None:
        domains = _existing_domains(path)
    data: dict[str, Any] = {"version": 1, "models": {n: e.to_dict() for n, e in entries.items()}}
    if domains:
        data["domains"] = {d: {"files": dict(sorted(f.items()))} for d, f in domains.items()}
    path.write_text(json.dumps(data, indent=1) + "\n")


def _existing_domains(path: Path) -> dict[str, dict[str, str]]:
    """The ``domains`` pins in the manifest at ``path``, or ``{}`` where there is no readable one."""
    try:
        raw = json.loads(path.read_text()).get("domains")
    except (OSError, ValueError, AttributeError):
        return {}
    if not isinstance(raw, dict):
        return {}
    return {d: dict(p["files"]) for d, p in raw.items() if isinstance(p, dict) and isinstance(p.get("files"), dict)}


def pin_domain(domain: str, path: str | Path = MANIFEST) -> dict[str, str]:
    """Pin the files of ``domain``'s in-domain reference folder (``<manifest folder>/<domain>/domain``)
    in the manifest at ``path``, as they are now; returns the pins. Run after writing the folder."""
    path = Path(path)
    entries = load_manifest(path) if path.is_file() else {}
    domains = _existing_domains(path) if path.is_file() else {}
    domains[domain] = folder_files(path.parent / domain / DOMAIN_FOLDER)
    save_manifest(entries, path, domains=domains)
    return domains[domain]


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def folder_listing(folder: str | Path) -> list[str]:
    """The relative names (``/``-separated, sorted) of every file under ``folder``. A symbolic link
    (the folder itself, a file or a subfolder) or anything but a regular file is refused with
    :class:`IntegrityError`: nothing inside a registry root is followed elsewhere."""
    folder = Path(folder)
    if folder.is_symlink():
        raise IntegrityError(f"{folder} is a symbolic link; model folders are read only as real folders "
                             "(copy the files in instead of linking them).")
    if not folder.is_dir():
        raise ModelError(f"No model folder at {folder}.")
    names = []
    for top, dirs, files in os.walk(folder):
        for n in sorted(dirs + files):
            p = Path(top) / n
            rel = p.relative_to(folder).as_posix()
            if p.is_symlink():
                raise IntegrityError(f"{folder}: {rel} is a symbolic link; files in a model folder must be real "
                                     "files (links are not followed).")
            if n in files and not p.is_file():
                raise IntegrityError(f"{folder}: {rel} is not a regular file.")
            if n in files:
                names.append(rel)
    return sorted(names)


def folder_files(folder: str | Path) -> dict[str, str]:
    """``{relative name: sha256}`` of every file under ``folder`` (what an entry's ``files`` pins)."""
    folder = Path(folder)
    return {rel: file_sha256(folder / rel) for rel in folder_listing(folder)}
