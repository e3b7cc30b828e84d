"""The registry manifest (``checkpoints/registry.json``): its entries, validated on load, and the
SHA-256 of weights. A broken entry is named with the field at fault."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from decodemo.errors import ModelError
from decodemo.methods.catalogue import DETECTORS


CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"
MANIFEST = CHECKPOINTS / "registry.json"
WEIGHT_FILES = ("config.json", "model.safetensors")
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
    sha256: str
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
    if bundled is not None and (Path(bundled).is_absolute() or ".." in Path(bundled).parts):
        raise _fail(where, name, "bundled", "must be a folder relative to checkpoints/")
    hub = None
    raw_hub = need("hub", dict, optional=True)
    if raw_hub is not None:
        for fld in ("repo_id", "revision"):
            if not isinstance(raw_hub.get(fld), str) or not raw_hub[fld]:
                raise _fail(where, name, f"hub.{fld}", "missing")
        if not _SHA1.match(raw_hub["revision"]):
            raise _fail(where, name, "hub.revision", "must be pinned to a 40-hex commit, not a branch or tag")
        extra = sorted(set(raw_hub) - {"repo_id", "revision", "subfolder"})
        if extra:
            raise _fail(where, name, f"hub.{extra[0]}", "unknown field")
        hub = HubSource(raw_hub["repo_id"], raw_hub["revision"], raw_hub.get("subfolder") or None)
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
        calibration=need("calibration", dict, optional=True) or {},
    )


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


def load_manifest(path: str | Path = MANIFEST) -> dict[str, Entry]:
    """Read and validate a manifest -> ``{name: Entry}`` (in file order)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise RegistryError(f"No model manifest at {path}.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegistryError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise RegistryError(f"{path}: expected an object with a 'models' object.")
    return {name: _entry(name, raw, str(path)) for name, raw in data["models"].items()}


def save_manifest(entries: dict[str, Entry], path: str | Path = MANIFEST) -> None:
    Path(path).write_text(json.dumps({"version": 1, "models": {n: e.to_dict() for n, e in entries.items()}},
                                     indent=1) + "\n")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


