"""The compare service: one input, the three detectors of a domain side by side.

This is what the app, the command line (``python -m decodemo compare FILE``) and the tests
call; the Gradio callbacks only draw what it returns. For one image or audio clip it

1. reads and decodes the upload once with the inference layer
   (:func:`decodemo.inference.load_input`), which refuses bad files with a typed
   :class:`~decodemo.errors.InputError`;
2. runs each method of the domain's model set from the registry (loaded once, shared);
3. returns, per method, the score, the decision against that model's threshold, the
   percentile of the score among the model's normal reference scores, the anomaly map at
   the input's size (images: the uploaded image's pixels; audio: the spectrogram's
   mel bands x frames), the method's normal version of the input where it has one, NFE and
   latency; and a summary of how the methods agree with a majority verdict.

Thresholds are owned here: the registry entry's threshold unless one has been applied for the
model since (:meth:`Service.apply_threshold`, kept in the review store that
:meth:`Service.attach_store` connects, so it survives a restart); a caller may pass its own per
method for one call. The UI reads them with :meth:`Service.threshold` and never copies them.
Nothing here depends on test labels.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from decodemo import settings
from decodemo.errors import DecodemoError
from decodemo.methods.catalogue import TITLES
from decodemo.evaluation.reference import percentile_of, pixel_threshold, shape_calibrated
from decodemo.service.gate import LONG, SHORT, FairGate
from decodemo.service.results import Comparison, MethodOutcome, calibrated

#: clips longer than this (seconds) run as long work: behind images and short clips, a batch of windows at a time
LONG_CLIP_SECONDS = 20.0

__all__ = ["Service", "DEFAULT_DOMAIN"]

DEFAULT_DOMAIN = {"image": "bottle", "audio": "fan"}

Progress = Callable[[float, str], None]


def _resize_map(m: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    m = m.float()
    if tuple(m.shape[-2:]) != tuple(size):
        m = F.interpolate(m[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    return m.cpu().numpy().astype(np.float32)


def _resize_rgb(x: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    x = x.float().clamp(0, 1)
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0].clamp(0, 1)
    return (x.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)


def _resize2d(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if a.shape == tuple(size):
        return a.astype(np.float32)
    return _resize_map(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)), size)


class Service:
    """Domains, their model sets, their thresholds and the compare function over one shared registry."""

    def __init__(self, registry=None, *, store=None, keep_bytes: int | None = None, access=None,
                 compute_slots: int = 1) -> None:
        from decodemo.hub import ModelRegistry
        from decodemo.service.access import AccessPolicy

        self.registry = registry if registry is not None else ModelRegistry()
        self.access = access if access is not None else AccessPolicy()
        self._store = None
        self._results: OrderedDict[str, Comparison] = OrderedDict()
        self._result_bytes: dict[str, int] = {}
        self._keep_bytes = int(keep_bytes if keep_bytes is not None else settings.results_bytes())
        self._lock = threading.Lock()
        self._domain_refs: dict[str, Any] = {}  # domain -> its in-domain reference (or None), loaded once
        self._reference_failures: dict[str, str] = {}  # domain -> why its in-domain check is unavailable
        self.gate = FairGate(slots=compute_slots)  # whose turn it is at the models (short work first)
        if store is not None:
            self.attach_store(store)

    # ------------------------------------------------------------------ thresholds (owned here)
    def attach_store(self, store) -> None:
        """Back the applied thresholds with ``store`` (a :class:`decodemo.store.ReviewStore`): they
        are read from it whenever a threshold is asked for, so every app process on one database
        judges against the same thresholds, and :meth:`apply_threshold` writes there."""
        with self._lock:
            self._store = store

    def applied_thresholds(self) -> dict[str, float]:
        """registry name -> the threshold applied last, read from the store now (one query)."""
        store = self._store
        if store is None:
            return {}
        return {k: float(v) for k, v in store.applied_thresholds().items() if k in self.registry.entries}

    def threshold(self, name: str, applied: dict[str, float] | None = None) -> float:
        """The threshold model ``name`` is judged against now: the one applied last (from the
        store, or from ``applied`` when the caller read them already), else the registry's."""
        applied = self.applied_thresholds() if applied is None else applied
        value = applied.get(name)
        return float(value if value is not None else self.registry.entry(name).threshold)

    def thresholds(self) -> dict[str, float]:
        """Every registry model's current threshold (one read of the store)."""
        applied = self.applied_thresholds()
        return {n: self.threshold(n, applied) for n in self.registry.entries}

    def threshold_bounds(self, name: str) -> tuple[float, float]:
        """The range a threshold of ``name`` may be applied in, from its normal reference
        (:func:`decodemo.metrics.calibration.threshold_bounds`)."""
        from decodemo.metrics.calibration import threshold_bounds

        e = self.registry.entry(name)
        return threshold_bounds((e.reference or {}).get("scores") or [], e.threshold)

    def apply_threshold(self, name: str, value: float, *, by: str | None, reason: str,
                        anonymous: bool | None = None) -> dict[str, Any]:
        """Judge model ``name`` against ``value`` from now on; the change (old, new, who, why) is
        kept in the attached store. Only who :attr:`access` allows (``by`` None, or ``anonymous``:
        a visitor without a login), and only within :meth:`threshold_bounds`. Returns the stored change."""
        import logging
        import math

        from decodemo.errors import ThresholdOutOfBoundsError

        self.registry.entry(name)  # an unknown model is refused before anything is written
        self.access.check_apply_thresholds(by, anonymous=anonymous)
        value = float(value)
        lo, hi = self.threshold_bounds(name)
        if not math.isfinite(value) or not lo <= value <= hi:
            raise ThresholdOutOfBoundsError(
                f"{name}: a threshold of {value:.6g} is outside what its normal reference allows "
                f"({lo:.4g} to {hi:.4g}); a larger move needs a new calibration, not a change here.")
        if self._store is None:
            raise DecodemoError("No review store is attached, so a threshold change could not be kept.")
        change = self._store.apply_threshold(name, value, old=self.threshold(name), by=by, reason=reason)
        logging.getLogger("decodemo.thresholds").warning(
            "threshold of %s changed from %.6g to %.6g by %s: %s", name, change["old_threshold"],
            change["new_threshold"], change["changed_by"], change["reason"])
        return change

    # ------------------------------------------------------------------ domains
    def domains(self, modality: str | None = None) -> list[str]:
        """The model sets with at least one diffusion method available (of ``modality``)."""
        from decodemo.methods.catalogue import DIFFUSION_METHODS

        seen: dict[str, None] = {}
        for e in list(self.registry.entries.values()):
            if (modality is None or e.modality == modality) and e.method in DIFFUSION_METHODS:
                seen.setdefault(e.domain)
        return list(seen)

    def unavailable(self) -> dict[str, str]:
        """Registry names that cannot be used here -> why (a broken manifest entry, weights that
        cannot be had or do not verify); the rest keep working."""
        with self._lock:
            refs = {f"{d} (in-domain check)": why for d, why in self._reference_failures.items()}
        return {**dict(getattr(self.registry, "unavailable", {}) or {}), **refs}

    def _model(self, reg_name: str):
        """The loaded model ``reg_name``; one that cannot be loaded is marked unavailable (later
        comparisons leave it out) and refused with the reason."""
        from decodemo.errors import ModelError

        try:
            return self.registry.get(reg_name)
        except ModelError as exc:
            self._mark_unavailable(reg_name, str(exc))
            raise DecodemoError(f"{reg_name} is unavailable ({exc}); it is left out from now on: press Compare "
                                "again for the other methods.") from None

    def _mark_unavailable(self, reg_name: str, reason: str) -> None:
        mark = getattr(self.registry, "mark_unavailable", None)
        if mark is not None:
            mark(reg_name, reason)

    def domain_modality(self, domain: str) -> str:
        for e in self.registry.entries.values():
            if e.domain == domain:
                return e.modality
        raise DecodemoError(f"Unknown domain {domain!r}; the registry has: {', '.join(self.domains())}.")

    def models_for(self, domain: str) -> dict[str, str]:
        """method -> registry name for ``domain``, in the catalogue's order."""
        from decodemo.methods.catalogue import DIFFUSION_METHODS

        names = {e.method: n for n, e in self.registry.entries.items() if e.domain == domain}
        if not names:
            raise DecodemoError(f"Unknown domain {domain!r}; the registry has: {', '.join(self.domains())}.")
        return {m: names[m] for m in DIFFUSION_METHODS if m in names}

    def reference_model(self, domain: str) -> str | None:
        """The registry name of ``domain``'s nearest-neighbour ``baseline``, if it has one."""
        return next((n for n, e in self.registry.entries.items() if e.domain == domain and e.method == "baseline"),
                    None)

    def default_domain(self, modality: str) -> str:
        doms = self.domains(modality)
        if not doms:
            raise DecodemoError(f"The registry has no {modality} models.")
        want = DEFAULT_DOMAIN.get(modality)
        return want if want in doms else doms[0]

    def _domain_for(self, domain: str | None, modality: str, name: str) -> str:
        if domain in (None, "", "auto"):
            return self.default_domain(modality)
        dom_modality = self.domain_modality(domain)
        if dom_modality != modality:
            raise DecodemoError(f"The {domain} models take {dom_modality} input but {name} is an {modality} "
                                f"file; pick an {modality} model set.")
        return domain

    def refresh(self) -> list[str]:
        """Re-read the user registries (new ``fit`` domains); returns the model names that are new."""
        added = self.registry.refresh()
        with self._lock:
            self._domain_refs.clear()
        return added

    # ------------------------------------------------------------------ in-domain references
    def domain_reference(self, domain: str):
        """``domain``'s in-domain reference (:mod:`decodemo.ood`, kept in ``<root>/<domain>/domain``
        beside its models), or ``None`` where it has none."""
        from decodemo.ood import REFERENCE_FOLDER, DomainReference

        with self._lock:
            if domain in self._domain_refs:
                return self._domain_refs[domain]
        from decodemo.errors import ModelError

        names = [n for n, e in list(self.registry.entries.items()) if e.domain == domain]
        ref = None
        if names:
            folder = self.registry.root_of(names[0]) / domain / REFERENCE_FOLDER
            if (folder / "config.json").is_file():
                try:
                    ref = DomainReference.load(folder)
                except (ModelError, OSError, ValueError) as exc:  # the set still serves, unchecked
                    self._mark_unavailable_reference(domain, str(exc))
        with self._lock:
            self._domain_refs[domain] = ref
        return ref

    def _mark_unavailable_reference(self, domain: str, reason: str) -> None:
        import logging

        logging.getLogger("decodemo.service").warning("%s: in-domain check unavailable: %s", domain, reason)
        with self._lock:
            self._reference_failures[domain] = reason

    def domain_checks(self, loaded, domains: list[str]) -> list:
        """How far ``loaded`` is from each of ``domains`` that has an in-domain reference, nearest
        first (:class:`decodemo.ood.DomainCheck`); features are computed once per front end."""
        import json

        from decodemo.ood import loaded_features

        feats: dict[str, dict[str, np.ndarray]] = {}  # front end -> {pooling: features}
        out = []
        for d in domains:
            ref = self.domain_reference(d)
            if ref is None or ref.modality != loaded.modality:
                continue
            key = json.dumps(ref.mel, sort_keys=True)
            if key not in feats:
                feats[key] = loaded_features(loaded, ref.mel)
            out.append(ref.check(feats[key]))
        return sorted(out, key=lambda c: c.ratio)

    def warm_up_available(self, progress: Progress | None = None) -> tuple[float, dict[str, str]]:
        """:meth:`warm_up` that degrades instead of failing: every model that cannot be loaded (or
        whose in-domain reference cannot) is marked unavailable and the rest are loaded. Returns
        the seconds it took and the names that failed -> why."""
        from decodemo.errors import ModelError

        t0 = time.perf_counter()
        failed: dict[str, str] = {}
        names = [n for d in self.domains() for n in self.models_for(d).values()]
        names += [r for r in map(self.reference_model, self.domains()) if r is not None]
        for i, n in enumerate(names):
            if progress:
                progress(i / max(1, len(names)), f"loading {n}")
            try:
                self.registry.get(n)
            except ModelError as exc:
                failed[n] = str(exc)
                self._mark_unavailable(n, str(exc))
        for d in self.domains():
            self.domain_reference(d)  # one that cannot be loaded is left out (unavailable())
        if any(self._domain_refs.get(d) is not None for d in self.domains()):
            from decodemo.ood.reference import warm_up as warm_up_features

            warm_up_features()
        return time.perf_counter() - t0, {**self.unavailable(), **failed}

    def warm_up(self, domains: list[str] | None = None, progress: Progress | None = None) -> float:
        """Load the models and in-domain references of ``domains`` (default: all) now; returns the
        seconds it took."""
        from decodemo.ood.reference import warm_up as warm_up_features

        t0 = time.perf_counter()
        doms = domains or self.domains()
        names = [n for d in doms for n in self.models_for(d).values()]
        names += [r for r in map(self.reference_model, doms) if r is not None]
        for i, n in enumerate(names):
            if progress:
                progress(i / max(1, len(names)), f"loading {n}")
            self.registry.get(n)
        if any(self.domain_reference(d) is not None for d in doms):
            warm_up_features()  # the check's feature extractor, built before the first upload
        return time.perf_counter() - t0

    # ------------------------------------------------------------------ compare
    def result(self, result_id: str) -> Comparison:
        with self._lock:
            if result_id not in self._results:
                raise DecodemoError("That result is no longer held by the server; press Compare again.")
            return self._results[result_id]

    def _remember(self, comp: Comparison) -> None:
        """Hold ``comp`` (without the upload's bytes) for redraws; the oldest results go first once
        they hold more than ``keep_bytes`` (``DECODEMO_RESULTS_MB``), the newest always stays."""
        held = replace(comp, data=None)
        with self._lock:
            self._results[comp.id] = held
            self._result_bytes[comp.id] = held.nbytes
            while len(self._results) > 1 and sum(self._result_bytes.values()) > self._keep_bytes:
                old, _ = self._results.popitem(last=False)
                self._result_bytes.pop(old, None)

    def held_bytes(self) -> int:
        """Bytes of the results held in memory now."""
        with self._lock:
            return sum(self._result_bytes.values())

    @torch.no_grad()
    def compare(self, path: str | Path, *, domain: str | None = None, thresholds: dict[str, float] | None = None,
                progress: Progress | None = None, name: str | None = None) -> Comparison:
        """Run the domain's three methods on the file at ``path``.

        ``domain`` defaults to the modality's default (bottle for images, fan for audio); a
        domain of the other modality is refused with a clear message. ``thresholds`` maps a
        method id to a threshold for this call only.
        """
        from decodemo.inference import load_input, sniff_modality
        from decodemo.io.audio import DEFAULT_MAX_AUDIO_BYTES
        from decodemo.io.images import DEFAULT_MAX_BYTES
        from decodemo.io.source import read_source

        t_start = time.perf_counter()
        path = Path(path)
        if not path.is_file():
            raise DecodemoError(f"No file named {name or path.name} was received.")
        data, _ = read_source(path, max_bytes=max(DEFAULT_MAX_AUDIO_BYTES, DEFAULT_MAX_BYTES), kind="file")
        modality = sniff_modality(data, path.name)  # by content, the upload read once
        auto = domain in (None, "", "auto")
        domain = self._domain_for(domain, modality, path.name)
        report = progress or (lambda frac, desc: None)
        report(0.0, "reading the input")
        first = self.registry.entry(next(iter(self.models_for(domain).values())))
        loaded = load_input(path, mel=first.input.get("mel") if modality == "audio" else None, name=name, data=data)
        long = modality == "audio" and len(loaded.waveform) > LONG_CLIP_SECONDS * loaded.mel.sample_rate
        if self.gate.waiting():
            report(0.01, "waiting for a turn (images and short clips go first)")
        with self.gate.turn(LONG if long else SHORT) as turn:
            domain, domain_check, outcomes, reference = self._compare_loaded(loaded, domain, auto, modality,
                                                                            thresholds, report, turn)
        report(1.0, "done")
        comp = Comparison(
            id=uuid.uuid4().hex, modality=modality, domain=domain, name=loaded.name, sha256=loaded.sha256,
            input=_input_array(loaded), outcomes=outcomes, seconds=time.perf_counter() - t_start, path=str(path),
            reference=reference, data=loaded.data, domain_check=domain_check, **_audio_extra(loaded),
        )
        self._remember(comp)
        return comp

    def _compare_loaded(self, loaded, domain: str, auto: bool, modality: str, thresholds, report, turn):
        """The models of the chosen domain on a decoded input, inside ``turn`` (a long clip pauses
        it after every batch of windows) -> (domain, domain check, outcomes, reference)."""
        report(0.02, "checking the input against the model sets' training data")
        checks = self.domain_checks(loaded, self.domains(modality) if auto else [domain])
        if auto and checks:
            domain = checks[0].domain  # the set whose training data is closest
        models = self.models_for(domain)
        domain_check = _domain_check_json(checks, domain, auto)
        applied = self.applied_thresholds()  # one read: every method of this call is judged alike
        outcomes = []
        for i, (method, reg_name) in enumerate(models.items()):
            report((i + 0.1) / len(models), f"{TITLES[method]}: loading model")
            model = self._model(reg_name)
            report((i + 0.3) / len(models), f"{TITLES[method]}: detecting")

            def windows(done: int, total: int, i=i, method=method) -> None:
                report((i + 0.3 + 0.7 * done / total) / len(models), f"{TITLES[method]}: window {done} of {total}")
                turn.pause()  # short work that came meanwhile goes first

            outcomes.append(self._run(model, reg_name, method, loaded,
                                      (thresholds or {}).get(method, self.threshold(reg_name, applied)),
                                      progress=windows if modality == "audio" else None))
        reference = None
        ref_name = self.reference_model(domain)
        if ref_name is not None:  # the nearest-neighbour reference: shown, never voted
            report(0.97, "nearest-neighbour reference")
            reference = self._run(self._model(ref_name), ref_name, "baseline", loaded,
                                  self.threshold(ref_name, applied))
        return domain, domain_check, outcomes, reference

    def _category(self, model, reg_name: str) -> dict[str, Any]:
        cats = getattr(model.config, "categories", None)
        if not cats:
            return {}
        cid = self.registry.entry(reg_name).class_id
        return {"category": cats[model.category_index(cid)]}

    def _run(self, model, reg_name: str, method: str, loaded, threshold: float, progress=None) -> MethodOutcome:
        """One method on the upload -> its outcome, maps at the input's size (``progress(done,
        total)``: a clip's windows)."""
        from decodemo.inference import detect_loaded

        t0 = time.perf_counter()
        extra = {"progress": progress} if progress is not None else {}
        det = detect_loaded(model, loaded, **self._category(model, reg_name), **extra)
        seconds = time.perf_counter() - t0
        size = _input_array(loaded).shape[:2]
        if loaded.modality == "image":
            tf = _resize_map(torch.from_numpy(det.map), size)
            rec = None if det.reconstruction is None else _resize_rgb(torch.from_numpy(det.reconstruction), size)
            frames = None
        else:
            tf = _resize2d(det.map, size)
            rec = None if det.reconstruction is None else np.clip(_resize2d(det.reconstruction, size), 0, 1)
            frames = tf.max(axis=0)
        e = self.registry.entry(reg_name)
        ref = e.reference or {}
        scores = list(ref.get("scores") or [])
        score, shape = shape_calibrated(float(det.score), det.geometry, ref)
        if not np.isfinite(score):  # never judged: a NaN is not "normal"
            raise DecodemoError(f"{TITLES.get(method, method)} gave no finite score for {loaded.name}, so nothing "
                                "was judged; the input holds values the model cannot work with.")
        return MethodOutcome(
            method=method, model=reg_name, score=score, threshold=float(threshold),
            revision=e.hub.revision if e.hub is not None and not e.bundled else f"bundled:{e.sha256[:12]}",
            default_threshold=float(e.threshold), decision="anomalous" if score > threshold else "normal",
            percentile=percentile_of(score, scores) if scores else None,
            nfe=int(det.nfe), latency_ms=1000.0 * seconds, map=tf,
            pixel_threshold=pixel_threshold(ref, float(threshold)) if ref else None,
            reference_scores=scores, pixel_quantiles=ref.get("pixel_quantiles"), reconstruction=rec,
            frame_scores=frames, shape=shape,
            calibration=calibrated(scores, float(threshold), (e.calibration or {}).get("target")),
        )


def _domain_check_json(checks: list, domain: str, auto: bool) -> dict[str, Any] | None:
    """The check of the domain used, how it was chosen and every candidate (JSON-ready), or
    ``None`` where that domain has no in-domain reference."""
    used = next((c for c in checks if c.domain == domain), None)
    if used is None:
        return None
    return {**used.to_dict(), "ratio": round(used.ratio, 4), "chosen": "auto" if auto else "given",
            "candidates": [{**c.to_dict(), "ratio": round(c.ratio, 4)} for c in checks]}


def _input_array(loaded) -> np.ndarray:
    """What the page draws as the input: image ``(H, W, 3)`` uint8; audio the spectrogram."""
    if loaded.modality == "image":
        return loaded.pixels
    return loaded.spectrogram.astype(np.float32)


def _audio_extra(loaded) -> dict[str, Any]:
    if loaded.modality != "audio":
        return {}
    from decodemo.io.spectrogram import frame_times, mel_band_hz

    mel = loaded.mel
    return {"waveform": loaded.waveform, "sample_rate": mel.sample_rate,
            "frame_times": frame_times(loaded.spectrogram.shape[1], mel), "band_hz": mel_band_hz(mel)}
