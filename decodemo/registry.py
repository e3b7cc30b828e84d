"""The model registry: a model is a name (``bottle/invad``, ``fan/recon``, ...) that resolves to
pinned, verified weights, loaded once onto the best device and shared by every request.

The manifest (``checkpoints/registry.json``) lists, per entry: the method, modality, domain and
class id; an optional bundled folder under ``checkpoints/``; an optional Hugging Face Hub source
(``repo_id``, ``revision`` pinned to a commit, ``subfolder``); the SHA-256 of the weights; the
decision threshold and how it was chosen; the evaluation figures; the input settings; the
training data and its licence. It is validated on load, and a broken entry is named with
the field at fault.

Resolution order: the bundled folder -> the local Hugging Face cache -> a download with
``huggingface_hub.snapshot_download(revision=..., allow_patterns=...)``. With
``HF_HUB_OFFLINE=1`` or without a network the bundled models keep working; an entry that can
only come from the Hub says so (:class:`ModelUnavailableError`) and the others are unaffected.
Only ``config.json`` + ``model.safetensors`` are fetched; a folder with pickle weights is refused.

Device: CUDA when present (the diffusion UNet in half precision, the frozen feature extractor and
VAE in float32), otherwise CPU; ``DECODEMO_DEVICE`` overrides (``cpu``, ``cuda``, ``cuda:1``).
Models load lazily, once per name behind a lock, and at most ``max_resident`` stay in memory
(least recently used first out).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections import Counter, OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from decodemo import settings
from decodemo.errors import DecodemoError, ModelError, UnsafeWeightsError
from decodemo.methods.catalogue import DETECTORS, PAPERS

__all__ = [
    "CHECKPOINTS",
    "MANIFEST",
    "RegistryError",
    "ModelUnavailableError",
    "HubSource",
    "Entry",
    "load_manifest",
    "save_manifest",
    "resolve",
    "where",
    "best_device",
    "ModelRegistry",
    "gpu_task",
    "file_sha256",
]

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
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
    #: normal reference (decodemo.reference): scores and map quantiles on normal inputs
    reference: dict[str, Any] = field(default_factory=dict)

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


# ------------------------------------------------------------------------------------- resolution
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
    from decodemo.methods.base import read_config

    read_config(folder)  # refuses folders with pickle files, checks config.json
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise ModelError(f"{entry.name}: {folder} has no model.safetensors.")
    got = file_sha256(weights)
    if got != entry.sha256:
        raise UnsafeWeightsError(f"{entry.name}: the weights in {folder} do not match the manifest "
                                 f"(SHA-256 {got[:12]}..., expected {entry.sha256[:12]}...). Refusing to load them.")
    return folder


def resolve(entry: Entry, *, root: str | Path = CHECKPOINTS, cache_dir=None, endpoint=None) -> tuple[Path, str]:
    """-> (verified folder, source) with source ``bundled``, ``cache`` or ``hub``."""
    if entry.bundled:
        folder = Path(root) / entry.bundled
        if (folder / "config.json").is_file():
            return verify(entry, folder), "bundled"
    if entry.hub is None:
        raise ModelUnavailableError(f"{entry.name}: its bundled folder {entry.bundled!r} is missing and it has no "
                                    f"Hub source.")
    hub = entry.hub
    try:
        return verify(entry, _snapshot(hub, local_only=True, cache_dir=cache_dir, endpoint=endpoint)), "cache"
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
    return verify(entry, folder), "hub"


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


# ------------------------------------------------------------------------------------- devices
def best_device() -> str:
    """``DECODEMO_DEVICE`` if set (``cpu``, ``cuda``, ``cuda:N``), else CUDA when present, else CPU."""
    import torch

    want = settings.device()
    if want:
        if not re.fullmatch(r"cpu|cuda(:\d+)?", want):
            raise DecodemoError(f"DECODEMO_DEVICE must be cpu, cuda or cuda:N, not {want!r}.")
        if want.startswith("cuda") and not torch.cuda.is_available():
            raise DecodemoError(f"DECODEMO_DEVICE={want} but no CUDA device is available.")
        return want
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_on_device(folder: str | Path, device: str):
    """Load a model folder onto ``device``; on CUDA the diffusion UNet runs in float16 (every
    method casts the UNet's input to its dtype and its output back to float32)."""
    import torch

    from decodemo.methods import load_model

    model = load_model(folder, device=device)
    if device.startswith("cuda") and hasattr(model, "unet"):
        model.unet.to(torch.float16)
    return model


def gpu_task(fn: Callable | None = None, *, duration: int = 60):
    """Wrap ``fn`` with ``spaces.GPU`` on a Hugging Face ZeroGPU Space (``SPACES_ZERO_GPU`` set and
    the ``spaces`` package importable); return it unchanged anywhere else."""
    def wrap(f: Callable) -> Callable:
        if not settings.zero_gpu():
            return f
        try:
            import spaces  # type: ignore[import-not-found]
        except ImportError:
            return f
        return spaces.GPU(duration=duration)(f)

    return wrap(fn) if fn is not None else wrap


class ModelRegistry:
    """Names -> loaded models, each loaded once (one lock per name) and kept in an LRU of
    ``max_resident`` models. Thread-safe; share one per process."""

    def __init__(self, manifest: str | Path | dict[str, Entry] = MANIFEST, *, root: str | Path | None = None,
                 device: str | None = None, max_resident: int = settings.MAX_MODELS, cache_dir=None, endpoint=None) -> None:
        """``root`` (where bundled folders live) defaults to the manifest's folder."""
        self.entries = manifest if isinstance(manifest, dict) else load_manifest(manifest)
        self.root = Path(root) if root is not None else (CHECKPOINTS if isinstance(manifest, dict)
                                                         else Path(manifest).parent)
        self.device = device or best_device()
        self.max_resident = max(1, int(max_resident))
        self.cache_dir, self.endpoint = cache_dir, endpoint
        self._lock = threading.Lock()
        self._name_locks: dict[str, threading.Lock] = {}
        self._resident: OrderedDict[str, Any] = OrderedDict()
        self.load_counts: Counter[str] = Counter()
        self.sources: dict[str, str] = {}

    def entry(self, name: str) -> Entry:
        try:
            return self.entries[name]
        except KeyError:
            raise ModelError(f"Unknown model {name!r}; the registry has: {', '.join(self.entries)}.") from None

    def names(self, *, modality: str | None = None, domain: str | None = None) -> list[str]:
        return [n for n, e in self.entries.items()
                if (modality is None or e.modality == modality) and (domain is None or e.domain == domain)]

    def resident(self) -> list[str]:
        with self._lock:
            return list(self._resident)

    def get(self, name: str):
        """The loaded model for ``name`` (loading it on first use)."""
        entry = self.entry(name)
        with self._lock:
            if name in self._resident:
                self._resident.move_to_end(name)
                return self._resident[name]
            lock = self._name_locks.setdefault(name, threading.Lock())
        with lock:  # one loader per name; other names load in parallel
            with self._lock:
                if name in self._resident:
                    self._resident.move_to_end(name)
                    return self._resident[name]
            folder, source = resolve(entry, root=self.root, cache_dir=self.cache_dir, endpoint=self.endpoint)
            model = load_on_device(folder, self.device)
            with self._lock:
                self.load_counts[name] += 1
                self.sources[name] = source
                self._resident[name] = model
                while len(self._resident) > self.max_resident:
                    self._resident.popitem(last=False)
            return model


# ------------------------------------------------------------------------------------- building
METHOD_README = Path(__file__).resolve().parent / "methods"


def entry_from_folder(name: str, folder: str | Path, *, domain: str, class_id: str | None = None,
                      figures: dict[str, Any] | None = None, training_data: str = "", licence: str = "",
                      root: str | Path = CHECKPOINTS, hub: HubSource | None = None) -> Entry:
    """A manifest entry for a model folder: method, modality, threshold (of ``class_id`` for a
    multi-class model), input settings and SHA-256 from the folder itself."""
    from decodemo.methods.base import read_config

    folder = Path(folder)
    cfg = read_config(folder)
    thr = cfg.get("threshold")
    if isinstance(thr, dict):
        if class_id is None and len(thr) == 1:
            class_id = next(iter(thr))  # a one-category model: its only class
        if class_id not in thr:
            raise RegistryError(f"{name}: {folder} is multi-class ({sorted(thr)}); give its class id.")
        thr = thr[class_id]
    if thr is None:
        raise RegistryError(f"{name}: {folder} has no decision threshold.")
    vae = cfg.get("vae") or {}
    size = cfg.get("image_size", vae.get("image_size"))
    try:
        bundled = str(folder.resolve().relative_to(Path(root).resolve()))
    except ValueError:
        bundled = None
    return Entry(name=name, method=cfg["method"], modality=cfg.get("modality", "image"), domain=domain,
                 class_id=class_id, threshold=float(thr), threshold_provenance=cfg.get("threshold_provenance") or "",
                 sha256=file_sha256(folder / "model.safetensors"), bundled=bundled, hub=hub, figures=figures or {},
                 input={"image_size": size, "mel": cfg.get("mel")}, training_data=training_data, licence=licence,
                 paper=PAPERS.get(cfg["method"], ""))


def _deviations(method: str) -> str:
    """The "Deviations" / "Choices" section of the method's README, for the model card."""
    path = METHOD_README / method / "README.md"
    if not path.is_file():
        return ""
    text = path.read_text()
    m = re.search(r"^## (Deviations[^\n]*|Choices the paper leaves open[^\n]*)\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    return m.group(2).strip() if m else ""


def selection_section(config: dict[str, Any] | None) -> str:
    """How a model's settings were chosen: the rule and every candidate's validation figures."""
    sel = (config or {}).get("selection") or {}
    if not sel:
        return ("Trained before settings were selected on validation data; its settings are the method's "
                "defaults (see the method README).")
    vs = sel.get("validation_set", {})
    rows = "\n".join(
        f"| {'**' if i == sel['chosen'] else ''}{', '.join(f'{k} = {v}' for k, v in c['settings'].items())}"
        f"{'**' if i == sel['chosen'] else ''}{' (paper)' if c.get('paper') else ''} | "
        + " | ".join(f"{c['validation'].get(k, float('nan')):.3f}" for k in ("image_auroc", "pixel_auroc", "aupro"))
        + f" | {c['score']:.3f} |" for i, c in enumerate(sel["candidates"]))
    rerun = f" Run with `python -m decodemo select`: {sel['rerun']}." if sel.get("rerun") else ""
    return (f"Mode `{sel['mode']}`.{rerun} Rule: {sel['rule']}. Validation set: {vs.get('normal_inputs', '?')} normal "
            f"inputs and {vs.get('synthetic_anomalies', '?')} synthetic anomalies ({vs.get('source', '')}).\n\n"
            "| candidate | image AUROC | pixel AUROC | AUPRO | score |\n|---|---|---|---|---|\n" + rows)


def model_card(entry: Entry, config: dict[str, Any] | None = None) -> str:
    """A Hugging Face model card (README.md with YAML front matter) for ``entry``; ``config`` (the
    folder's ``config.json``) adds how its settings were chosen."""
    figs = "\n".join(f"| {k} | {v} |" if isinstance(v, int) or not isinstance(v, float) else f"| {k} | {v:.3f} |"
                     for k, v in entry.figures.items()) or "| (none recorded) | |"
    article = "An" if entry.method[:1] in "aeiou" else "A"
    lic = entry.licence.lower()
    hf_licence = "cc-by-nc-sa-4.0" if "cc by-nc-sa 4.0" in lic else "other"
    return f"""---
library_name: decodemo
license: {hf_licence}
tags:
- anomaly-detection
- diffusion
- {entry.method}
- {entry.modality}
---

# decodemo `{entry.name}`

{article} `{entry.method}` anomaly detector for **{entry.domain}** ({entry.modality}{', class ' + entry.class_id if entry.class_id else ''}),
trained with decodemo on normal data only. Load it with
`decodemo.methods.load_model(folder)`; the folder holds `config.json` and `model.safetensors`
(safetensors only, SHA-256 `{entry.sha256}`).

## Method
{entry.paper}

## Training data and licence
{entry.training_data or 'not recorded'}

Licence of the data, which the weights inherit: {entry.licence or 'not recorded'}.

## Decision threshold
{entry.threshold:.6g}: {entry.threshold_provenance}

## Figures (test split of the training data's source)
| metric | value |
|---|---|
{figs}

## How the settings were chosen (validation without test data)
{selection_section(config)}

## Deviations from the paper
{_deviations(entry.method) or 'See the method README in decodemo.'}
"""


def push(name: str, repo_id: str, *, manifest: str | Path = MANIFEST, root: str | Path = CHECKPOINTS,
         token: str | None = None, private: bool = False, api=None, record: bool = True) -> str:
    """Upload the model folder of ``name`` with a generated model card to ``repo_id`` on the Hub;
    return the commit sha and (``record``) pin it in the manifest as the entry's Hub source."""
    import shutil
    import tempfile

    from huggingface_hub import HfApi

    entries = load_manifest(manifest)
    if name not in entries:
        raise ModelError(f"Unknown model {name!r}; the registry has: {', '.join(entries)}.")
    entry = entries[name]
    folder, _ = resolve(entry, root=root)
    api = api or HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for f in WEIGHT_FILES:
            shutil.copy2(folder / f, Path(tmp) / f)
        from decodemo.methods.base import read_config

        (Path(tmp) / "README.md").write_text(model_card(entry, read_config(folder)))
        info = api.upload_folder(repo_id=repo_id, folder_path=tmp,
                                 commit_message=f"decodemo {name}: {entry.method} weights and model card")
    sha = getattr(info, "oid", None) or str(info)
    if record and _SHA1.match(sha):
        entry.hub = HubSource(repo_id, sha, None)
        save_manifest(entries, manifest)
    return sha
