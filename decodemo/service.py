"""The compare service: one input, the three detectors of a domain side by side.

This is what the app, the command line (``python -m decodemo compare FILE``) and the tests
call; the Gradio callbacks only draw what it returns. For one image or audio clip it

1. loads the input once with the input layer (:mod:`decodemo.io`), which refuses bad files
   with a typed :class:`~decodemo.errors.InputError`;
2. runs each method of the domain's model set from the registry (loaded once, shared);
3. returns, per method, the score, the decision against that model's threshold, the
   percentile of the score among the model's normal reference scores, the anomaly map at
   the input's size (images: the uploaded image's pixels; audio: the spectrogram's
   mel bands x frames), the method's normal version of the input where it has one, NFE and
   latency; and a summary of how the methods agree with a majority verdict.

Thresholds: the registry entry's threshold unless one has been applied for the model since
(``Service.thresholds``, which the review dashboard sets); a caller may pass its own per
method. Nothing here depends on test labels.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from decodemo.errors import DecodemoError
from decodemo.methods.catalogue import DIFFUSION_METHODS, TITLES
from decodemo.reference import percentile_of, pixel_threshold

__all__ = ["METHOD_ORDER", "METHOD_TITLES", "MethodOutcome", "Comparison", "Service", "input_modality"]

#: the product's order of the three methods, left to right
METHOD_ORDER = DIFFUSION_METHODS
METHOD_TITLES = TITLES
DOMAIN_TITLES = {
    "bottle": "Bottle (MVTec AD)",
    "elpv": "Solar cells (elpv)",
    "screw": "Screw (MVTec AD)",
    "ball_screw": "Ball-screw drive surface",
    "fabric": "Fabric (AITEX)",
    "texture": "Synthetic texture",
    "fan": "Fan (machine sound)",
    "hum": "Synthetic machine hum",
}
DEFAULT_DOMAIN = {"image": "bottle", "audio": "fan"}

Progress = Callable[[float, str], None]


def input_modality(path: str | Path) -> str:
    """``"audio"`` for an audio file extension, else ``"image"`` (the image loader then says
    what the file is if it is neither)."""
    from decodemo.inputs import is_audio_path

    return "audio" if is_audio_path(path) else "image"


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class MethodOutcome:
    """One method's answer for one input."""

    method: str
    model: str  # registry name
    revision: str  # Hub commit, or "bundled:<sha256 prefix>"
    score: float
    threshold: float
    default_threshold: float  # the registry's threshold (before any override)
    decision: str  # "anomalous" or "normal"
    percentile: float | None  # of the score among the normal reference scores
    nfe: int
    latency_ms: float
    map: np.ndarray  # (H, W) float32 in the method's own units, at the input's size
    pixel_threshold: float | None  # map value flagged as defect at this threshold
    reference_scores: list[float]
    pixel_quantiles: dict[str, list[float]] | None
    reconstruction: np.ndarray | None  # image: (H, W, 3) uint8; audio: (n_mels, frames) in [0, 1]
    frame_scores: np.ndarray | None = None  # audio: (frames,) max of the map over frequency

    def with_threshold(self, threshold: float) -> "MethodOutcome":
        """The same outcome judged against another threshold (no model is run)."""
        from dataclasses import replace

        ref = {"scores": self.reference_scores, "pixel_quantiles": self.pixel_quantiles}
        return replace(self, threshold=float(threshold),
                       decision="anomalous" if self.score > threshold else "normal",
                       pixel_threshold=pixel_threshold(ref, float(threshold)))

    @property
    def mask(self) -> np.ndarray | None:
        return None if self.pixel_threshold is None else self.map > self.pixel_threshold


@dataclass
class Comparison:
    """The three methods' answers for one input, plus what is needed to draw them."""

    id: str
    modality: str
    domain: str
    name: str  # the uploaded file's name
    sha256: str  # of the uploaded bytes
    input: np.ndarray  # image: (H, W, 3) uint8; audio: spectrogram (n_mels, frames) in [0, 1]
    outcomes: list[MethodOutcome]
    seconds: float  # the whole comparison, loading included
    waveform: np.ndarray | None = None
    sample_rate: int | None = None
    frame_times: np.ndarray | None = None  # audio: seconds per spectrogram column
    band_hz: np.ndarray | None = None  # audio: centre frequency per spectrogram row
    path: str = ""
    #: the domain's nearest-neighbour ``baseline``, when it has one: shown as a reference only,
    #: never one of ``outcomes`` and never counted in the verdict
    reference: MethodOutcome | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the input (audio: mel bands, frames)."""
        return tuple(self.input.shape[:2])  # type: ignore[return-value]

    def outcome(self, method: str) -> MethodOutcome:
        for o in self.outcomes:
            if o.method == method:
                return o
        raise KeyError(method)

    def summary(self) -> dict[str, Any]:
        """Votes, agreement and the majority verdict of the methods."""
        return summarise(self.outcomes)

    def with_thresholds(self, thresholds: dict[str, float]) -> "Comparison":
        from dataclasses import replace

        return replace(self, outcomes=[o.with_threshold(thresholds[o.method]) if o.method in thresholds else o
                                       for o in self.outcomes])

    def to_json(self, out_dir: str | Path | None = None) -> dict[str, Any]:
        """A JSON-serialisable result. With ``out_dir``, each method's map is written there as
        ``<method>_map.npy`` (float32, the input's size, the method's units) and, where the method
        has one, ``<method>_normal.png`` (its normal version of the input); the result names them."""
        out = Path(out_dir) if out_dir is not None else None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
        methods = []
        for o in self.outcomes:
            row = {
                "method": o.method, "title": METHOD_TITLES.get(o.method, o.method), "model": o.model,
                "revision": o.revision, "score": o.score, "threshold": o.threshold,
                "default_threshold": o.default_threshold, "decision": o.decision, "percentile": o.percentile,
                "nfe": o.nfe, "latency_ms": round(o.latency_ms, 1), "pixel_threshold": o.pixel_threshold,
                "map_shape": list(o.map.shape), "map_file": None, "normal_file": None,
            }
            if out is not None:
                np.save(out / f"{o.method}_map.npy", o.map.astype(np.float32), allow_pickle=False)
                row["map_file"] = str(out / f"{o.method}_map.npy")
                if o.reconstruction is not None:
                    from PIL import Image

                    rec = o.reconstruction
                    if rec.ndim == 2:  # spectrogram, low frequencies at the bottom
                        rec = (np.flipud(rec) * 255).round().astype(np.uint8)
                    Image.fromarray(rec).save(out / f"{o.method}_normal.png")
                    row["normal_file"] = str(out / f"{o.method}_normal.png")
            if o.frame_scores is not None:
                row["frame_scores"] = [round(float(v), 5) for v in o.frame_scores]
            methods.append(row)
        res = {
            "id": self.id, "modality": self.modality, "domain": self.domain, "name": self.name,
            "sha256": self.sha256, "input_shape": list(self.size), "seconds": round(self.seconds, 3),
            "methods": methods, "summary": self.summary(),
        }
        if self.reference is not None:
            r = self.reference
            res["reference"] = {"method": r.method, "title": METHOD_TITLES.get(r.method, r.method), "model": r.model,
                                "score": r.score, "threshold": r.threshold, "decision": r.decision,
                                "percentile": r.percentile, "latency_ms": round(r.latency_ms, 1),
                                "counts_in_verdict": False}
        if self.modality == "audio":
            res["sample_rate"] = self.sample_rate
            res["duration_s"] = round(len(self.waveform) / self.sample_rate, 3) if self.waveform is not None else None
            res["frame_times"] = [round(float(t), 4) for t in self.frame_times]
        return res


def summarise(outcomes: list[MethodOutcome]) -> dict[str, Any]:
    n = len(outcomes)
    k = sum(o.decision == "anomalous" for o in outcomes)
    verdict = "anomalous" if 2 * k > n else "normal"
    pcts = [o.percentile for o in outcomes if o.percentile is not None]
    return {
        "verdict": verdict,
        "votes_anomalous": k,
        "n_methods": n,
        "agreement": round(max(k, n - k) / n, 4) if n else None,
        "unanimous": k in (0, n),
        # how strongly the methods disagree: the spread of their normal-reference percentiles
        "disagreement": round((max(pcts) - min(pcts)) / 100.0, 4) if len(pcts) > 1 else 0.0,
        "mean_percentile": round(float(np.mean(pcts)), 2) if pcts else None,
    }


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
    """Domains, their model sets and the compare function over one shared registry."""

    def __init__(self, registry=None, *, keep: int = 32) -> None:
        from decodemo.hub import ModelRegistry

        self.registry = registry if registry is not None else ModelRegistry()
        #: applied thresholds per registry name (set by the review dashboard); else the registry's
        self.thresholds: dict[str, float] = {}
        self._results: OrderedDict[str, Comparison] = OrderedDict()
        self._keep = keep
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ domains
    def domains(self, modality: str | None = None) -> list[str]:
        seen: dict[str, None] = {}
        for e in self.registry.entries.values():
            if modality is None or e.modality == modality:
                seen.setdefault(e.domain)
        return list(seen)

    def domain_modality(self, domain: str) -> str:
        for e in self.registry.entries.values():
            if e.domain == domain:
                return e.modality
        raise DecodemoError(f"Unknown domain {domain!r}; the registry has: {', '.join(self.domains())}.")

    def models_for(self, domain: str) -> dict[str, str]:
        """method -> registry name for ``domain``, in :data:`METHOD_ORDER`."""
        names = {e.method: n for n, e in self.registry.entries.items() if e.domain == domain}
        if not names:
            raise DecodemoError(f"Unknown domain {domain!r}; the registry has: {', '.join(self.domains())}.")
        return {m: names[m] for m in METHOD_ORDER if m in names}

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

    def threshold(self, name: str) -> float:
        return float(self.thresholds.get(name, self.registry.entry(name).threshold))

    def warm_up(self, domains: list[str] | None = None, progress: Progress | None = None) -> float:
        """Load the models of ``domains`` (default: all) now; returns the seconds it took."""
        t0 = time.perf_counter()
        doms = domains or self.domains()
        names = [n for d in doms for n in self.models_for(d).values()]
        names += [r for r in map(self.reference_model, doms) if r is not None]
        for i, n in enumerate(names):
            if progress:
                progress(i / max(1, len(names)), f"loading {n}")
            self.registry.get(n)
        return time.perf_counter() - t0

    # ------------------------------------------------------------------ compare
    def result(self, result_id: str) -> Comparison:
        with self._lock:
            if result_id not in self._results:
                raise DecodemoError("That result is no longer held by the server; press Compare again.")
            return self._results[result_id]

    def _remember(self, comp: Comparison) -> None:
        with self._lock:
            self._results[comp.id] = comp
            while len(self._results) > self._keep:
                self._results.popitem(last=False)

    @torch.no_grad()
    def compare(self, path: str | Path, *, domain: str | None = None, thresholds: dict[str, float] | None = None,
                progress: Progress | None = None, name: str | None = None) -> Comparison:
        """Run the domain's three methods on the file at ``path``.

        ``domain`` defaults to the modality's default (bottle for images, fan for audio); a
        domain of the other modality is refused with a clear message. ``thresholds`` maps a
        method id to a threshold for this call only.
        """
        t_start = time.perf_counter()
        path = Path(path)
        if not path.is_file():
            raise DecodemoError(f"No file at {path}.")
        modality = input_modality(path)
        if domain in (None, "", "auto"):
            domain = self.default_domain(modality)
        dom_modality = self.domain_modality(domain)
        if dom_modality != modality:
            raise DecodemoError(f"The {domain} models take {dom_modality} input but {path.name} is an {modality} "
                                f"file; pick an {modality} model set.")
        models = self.models_for(domain)
        report = progress or (lambda frac, desc: None)
        report(0.0, "reading the input")
        if modality == "image":
            from decodemo.io.images import load_image

            img = load_image(path)
            inp = np.asarray(img, dtype=np.uint8)
            extra: dict[str, Any] = {}
        else:
            extra, inp = self._load_audio(path, models)
            clip_audio = extra.pop("_clip")
        outcomes = []
        for i, (method, reg_name) in enumerate(models.items()):
            report((i + 0.1) / len(models), f"{METHOD_TITLES[method]}: loading model")
            model = self.registry.get(reg_name)
            report((i + 0.3) / len(models), f"{METHOD_TITLES[method]}: detecting")
            thr = (thresholds or {}).get(method, self.threshold(reg_name))
            if modality == "image":
                outcome = self._run_image(model, reg_name, method, img, inp.shape[:2], thr)
            else:
                outcome = self._run_audio(model, reg_name, method, clip_audio, inp.shape, thr)
            outcomes.append(outcome)
        reference = None
        ref_name = self.reference_model(domain)
        if ref_name is not None:  # the nearest-neighbour reference: shown, never voted
            report(0.97, "nearest-neighbour reference")
            model = self.registry.get(ref_name)
            thr = self.threshold(ref_name)
            reference = (self._run_image(model, ref_name, "baseline", img, inp.shape[:2], thr) if modality == "image"
                         else self._run_audio(model, ref_name, "baseline", clip_audio, inp.shape, thr))
        report(1.0, "done")
        comp = Comparison(
            id=uuid.uuid4().hex, modality=modality, domain=domain, name=name or path.name, sha256=_file_sha256(path),
            input=inp, outcomes=outcomes, seconds=time.perf_counter() - t_start, path=str(path), reference=reference,
            **extra,
        )
        self._remember(comp)
        return comp

    def _entry_info(self, reg_name: str) -> tuple[str, dict[str, Any]]:
        e = self.registry.entry(reg_name)
        revision = e.hub.revision if e.hub is not None and not e.bundled else f"bundled:{e.sha256[:12]}"
        return revision, e.reference or {}

    def _category(self, model, reg_name: str) -> dict[str, Any]:
        cats = getattr(model.config, "categories", None)
        if not cats:
            return {}
        cid = self.registry.entry(reg_name).class_id
        return {"category": cats[model.category_index(cid)]}

    def _outcome(self, *, method, reg_name, score, threshold, nfe, seconds, tf_map, reconstruction,
                 frame_scores=None) -> MethodOutcome:
        revision, ref = self._entry_info(reg_name)
        scores = list(ref.get("scores") or [])
        pq = ref.get("pixel_quantiles")
        return MethodOutcome(
            method=method, model=reg_name, revision=revision, score=float(score), threshold=float(threshold),
            default_threshold=float(self.registry.entry(reg_name).threshold),
            decision="anomalous" if score > threshold else "normal",
            percentile=percentile_of(float(score), scores) if scores else None,
            nfe=int(nfe), latency_ms=1000.0 * seconds, map=tf_map,
            pixel_threshold=pixel_threshold(ref, float(threshold)) if ref else None,
            reference_scores=scores, pixel_quantiles=pq, reconstruction=reconstruction, frame_scores=frame_scores,
        )

    def _run_image(self, model, reg_name, method, img, size, threshold) -> MethodOutcome:
        from decodemo.io.images import image_to_array

        cfg = model.config
        s = cfg.image_size
        t0 = time.perf_counter()
        x = torch.from_numpy(np.ascontiguousarray(image_to_array(img, s).transpose(2, 0, 1)))[None]
        res = model.detect(x, **self._category(model, reg_name))
        seconds = time.perf_counter() - t0
        rec = None if res.reconstruction is None else _resize_rgb(res.reconstruction[0], size)
        return self._outcome(method=method, reg_name=reg_name, score=float(res.scores[0]), threshold=threshold,
                             nfe=res.nfe, seconds=seconds, tf_map=_resize_map(res.maps[0], size), reconstruction=rec)

    def _load_audio(self, path: Path, models: dict[str, str]) -> tuple[dict[str, Any], np.ndarray]:
        """Decode the clip once (the input layer's checks); each method cuts its own windows from
        the waveform (:meth:`_run_audio`), sharing the spectrogram when the mel settings agree."""
        from decodemo.io.audio import load_audio
        from decodemo.io.spectrogram import MelConfig, frame_times, log_mel, mel_band_hz

        first = self.registry.entry(next(iter(models.values())))
        mel = MelConfig.from_dict(first.input.get("mel") or {})
        y = load_audio(path, sample_rate=mel.sample_rate)
        spec = log_mel(y, mel)
        extra = {"waveform": y, "sample_rate": mel.sample_rate,
                 "frame_times": frame_times(spec.shape[1], mel), "band_hz": mel_band_hz(mel)}
        extra["_clip"] = (mel, y, spec, path)
        return extra, spec.astype(np.float32)

    def _run_audio(self, model, reg_name, method, clip_audio, shape, threshold) -> MethodOutcome:
        from decodemo.inputs import AudioInput, spectrogram_windows
        from decodemo.io.audio import load_audio
        from decodemo.io.spectrogram import MelConfig, log_mel
        from decodemo.scoring import detect_clip

        cfg = model.config
        size = cfg.image_size
        t0 = time.perf_counter()
        mel0, y, spec, _ = clip_audio
        mel = MelConfig.from_dict(cfg.mel)
        if mel != mel0:  # a model with other mel settings: its own spectrogram of the same clip
            y = y if mel.sample_rate == mel0.sample_rate else load_audio(clip_audio[3], sample_rate=mel.sample_rate)
            spec = log_mel(y, mel)
        windows, starts = spectrogram_windows(spec, mel, size)
        clip = AudioInput(waveform=y, spectrogram=spec, windows=windows, starts=starts, mel=mel)
        res = detect_clip(model, clip, **self._category(model, reg_name))
        seconds = time.perf_counter() - t0
        tf = _resize2d(res.tf_map, shape)
        rec = None if res.reconstruction is None else np.clip(_resize2d(res.reconstruction, shape), 0, 1)
        return self._outcome(method=method, reg_name=reg_name, score=res.score, threshold=threshold, nfe=res.nfe,
                             seconds=seconds, tf_map=tf, reconstruction=rec, frame_scores=tf.max(axis=0))
