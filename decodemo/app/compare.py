"""The compare tab's handlers: plain functions of the service and the review store.

:class:`CompareHandlers` holds the service, the store and the page's components
(:class:`ComparePage`); :func:`decodemo.app.blocks.build_app` only wires its methods to events.
Redraws return ``{component: update}``, so no output is counted by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from decodemo.errors import DecodemoError
from decodemo.methods.catalogue import DIFFUSION_METHODS as METHOD_ORDER
from decodemo.methods.catalogue import TITLES as METHOD_TITLES
from decodemo.metrics.calibration import guarantee_text
from decodemo.service import Comparison, Service
from decodemo.app.errors import user_error

__all__ = ["DOMAIN_TITLES", "MethodPanel", "ComparePage", "CompareHandlers", "domain_choices"]

#: how the page names the bundled model sets (others are shown by their registry domain)
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


def _results_dir() -> Path:
    """This process's folder for handed-out files, swept on a schedule (:mod:`decodemo.app.cleanup`)."""
    from decodemo.app.cleanup import results_dir

    return results_dir()


def _pct_text(o) -> str:
    if o.percentile is None:
        return "no normal reference stored"
    n = len(o.reference_scores)
    if o.percentile >= 100:
        return f"above all {n} normal reference scores"
    if o.percentile <= 0:
        return f"below all {n} normal reference scores"
    return f"higher than {o.percentile:.0f}% of {n} normal reference scores"


def _method_md(o) -> str:
    cls = "verdict-anomalous" if o.decision == "anomalous" else "verdict-normal"
    rel = ">" if o.score > o.threshold else "<="
    return (f"### {METHOD_TITLES[o.method]}\n"
            f"`{o.model}` · {o.revision}\n\n"
            f"**score {o.score:.4g}** {rel} threshold {o.threshold:.4g} → "
            f"<span class='{cls}'>{o.decision.upper()}</span>\n\n"
            f"{_pct_text(o)} · NFE {o.nfe} · {o.latency_ms:.0f} ms{_calibration_text(o)}{_shape_text(o)}"
            f"\n\n<span class='calibration'>{_mask_text(o)}</span>")


def _mask_text(o) -> str:
    if o.pixel_threshold is None:
        return "map only: no normal reference for a defect mask"
    if o.decision == "anomalous":
        return "cyan outline: the defect mask (map above the pixel threshold)"
    return "no defect mask drawn: below threshold"


def _calibration_text(o) -> str:
    text = guarantee_text(o.calibration)
    return f"\n\n<span class='calibration'>{text}</span>" if text else ""


def _shape_text(o) -> str:
    """How a non-square input's score was put on the square normals' scale, if it was."""
    sh = getattr(o, "shape", None)
    if not sh:
        return ""
    text = (f"\n\nshape-calibrated: raw score {sh['raw_score']:.4g} for an input {sh['aspect_deficit']:.0%} "
            f"short of square, where normal crops of that shape score {sh['crop_mean']:.4g} ± {sh['crop_sd']:.3g}")
    if sh.get("meaningful") is False:
        text += (f"\n\n<span class='verdict-ood'>not meaningful for this shape</span>: on normal crops of this "
                 f"shape this model tells synthetic defects apart with AUROC {sh['defect_auroc']:.2f} only")
    return text


def _summary_md(comp: Comparison) -> str:
    s = comp.summary()
    cls = "verdict-anomalous" if s["verdict"] == "anomalous" else "verdict-normal"
    agree = "all three agree" if s["unanimous"] else f"{s['votes_anomalous']} of {s['n_methods']} say anomalous"
    title = DOMAIN_TITLES.get(comp.domain, comp.domain)
    check = comp.domain_check
    if check is not None and not check["in_domain"]:
        head = (f"## <span class='verdict-ood'>OUT OF DOMAIN for {title}: results are not meaningful</span>\n\n"
                f"This input is {check['ratio']:.1f} x as far from {title}'s training inputs as the threshold "
                f"allows (distance {check['distance']:.3g}, threshold {check['threshold']:.3g}). The methods "
                f"below would say {s['verdict']} ({agree}), but they were never shown anything like it.")
    else:
        head = f"## Verdict: <span class='{cls}'>{s['verdict'].upper()}</span> ({agree})"
    head += f"\n\n{s['reason']}" + (f" · the vote flags at most {s['fpr_bound']:.1%} of normal inputs"
                                      if s.get("fpr_bound") is not None else "")
    lines = [head, f"`{comp.name}` · {comp.modality} · model set **{DOMAIN_TITLES.get(comp.domain, comp.domain)}** · "
             f"{comp.seconds:.2f} s for the whole comparison"]
    if check is not None:
        how = "chosen automatically: its training data is the closest" if check["chosen"] == "auto" else "as chosen"
        others = ", ".join(f"{DOMAIN_TITLES.get(c['domain'], c['domain'])} {c['ratio']:.2f}"
                           for c in check["candidates"] if c["domain"] != comp.domain)
        lines.append(f"Model set {title} {how} (distance {check['ratio']:.2f} x its out-of-domain threshold"
                     + (f"; others: {others})" if others else ")"))
    if comp.modality == "audio" and comp.waveform is not None:
        lines.append(f"{len(comp.waveform) / comp.sample_rate:.1f} s clip; maps are over the log-mel spectrogram "
                     f"({comp.input.shape[0]} mel bands up to {comp.band_hz[-1]:.0f} Hz, "
                     f"{comp.input.shape[1]} frames).")
    table = ["| Method | Score | Threshold | Decision | Normal pct. |", "|---|---|---|---|---|"]
    for o in comp.outcomes:
        pct = "-" if o.percentile is None else f"{o.percentile:.0f}"
        table.append(f"| {METHOD_TITLES[o.method]} | {o.score:.4g} | {o.threshold:.4g} | {o.decision} | {pct} |")
    r = comp.reference
    if r is not None:  # grey, and not counted in the verdict
        pct = "-" if r.percentile is None else f"{r.percentile:.0f}"
        table.append(f"| <span class='reference-row'>{METHOD_TITLES['baseline']}: reference only, not counted</span> "
                     f"| <span class='reference-row'>{r.score:.4g}</span> | <span class='reference-row'>{r.threshold:.4g}"
                     f"</span> | <span class='reference-row'>{r.decision}</span> | "
                     f"<span class='reference-row'>{pct}</span> |")
    return "\n\n".join(lines) + "\n\n" + "\n".join(table)


def _round_sig(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def _slider_range(o) -> tuple[float, float, float]:
    """(minimum, maximum, step) of a threshold control: the normal reference, the score and the
    thresholds with a margin, rounded for display."""
    vals = [o.score, o.threshold, o.default_threshold, *o.reference_scores]
    lo, hi = float(min(vals)), float(max(vals))
    pad = 0.15 * (hi - lo) if hi > lo else max(1.0, abs(hi))
    lo, hi = _round_sig(lo - pad, 3), _round_sig(hi + pad, 3)
    return lo, hi, _round_sig((hi - lo) / 500.0, 2)


def _shown_threshold(threshold: float, step: float) -> float:
    """The threshold as its control shows it: the fewest significant digits (4 at least) that
    stay within a quarter step of it, so that :func:`_snap` takes it back to the exact value."""
    for digits in range(4, 10):
        v = _round_sig(threshold, digits)
        if abs(v - threshold) <= step / 4:
            return v
    return float(threshold)


def _snap(value: float | None, o) -> float | None:
    """A control's value, snapped to the outcome's own threshold when within half a step of it
    (the control shows a rounded number; a borderline decision must not flip by rounding)."""
    if value is None:
        return None
    _, _, step = _slider_range(o)
    return o.threshold if abs(float(value) - o.threshold) <= step / 2 else float(value)




def domain_choices(service: Service) -> list[tuple[str, str]]:
    """(label, value) of the model-set control: "auto", then the registry's domains."""
    return [("Auto (the set whose training data is closest)", "auto")] + [
        (f"{DOMAIN_TITLES.get(d, d)} [{service.domain_modality(d)}]", d) for d in service.domains()]


@dataclass
class MethodPanel:
    """One method's column: its heading, map overlay, normal version and threshold control."""

    column: Any
    head: Any
    overlay: Any
    normal: Any
    threshold: Any


@dataclass
class ComparePage:
    """Every component a redraw of the compare tab updates, by name."""

    summary: Any
    player: Any
    panels: dict[str, MethodPanel]  # method id -> its column, in the catalogue's order
    reference_plot: Any
    latency_plot: Any
    audio_plot: Any  # a sound's spectrogram, maps and per-frame scores on one time axis
    result: Any = None  # the held result (JSON)
    files: Any = None
    opacity: Any = None
    sliders: list = field(default_factory=list)
    status: Any = None  # under the Compare button: the progress bar of a run

    def outputs(self) -> list[Any]:
        """The components a redraw may update (Gradio needs them listed once, in any order)."""
        cols = [c for p in self.panels.values() for c in (p.column, p.head, p.overlay, p.normal, p.threshold)]
        return [self.summary, self.player, *cols, *self.plots()]

    def plots(self) -> list[Any]:
        return [self.reference_plot, self.latency_plot, self.audio_plot]


#: the service :func:`compare_on_gpu` runs (set by :func:`model_runner`; a ZeroGPU worker is a
#: fork of the app's process, so it holds the same service without anything crossing)
_GPU_SERVICE: Service | None = None


def compare_on_gpu(path: str, domain: str, name: str) -> Comparison:
    """The function ``spaces.GPU`` wraps on a ZeroGPU Space: plain strings in, a picklable
    :class:`Comparison` out (no callback, lock or open handle crosses; progress stays with the
    caller)."""
    if _GPU_SERVICE is None:
        raise DecodemoError("No service is set up for GPU work.")
    return _GPU_SERVICE.compare(path, domain=domain, name=name)


def model_runner(service: Service):
    """What runs the models for the app: ``service.compare`` itself, or on a ZeroGPU Space
    (``SPACES_ZERO_GPU``) :func:`compare_on_gpu` under ``spaces.GPU``, called with picklable
    values only (the progress callback is dropped: it cannot cross into the GPU worker)."""
    from decodemo import settings
    from decodemo.hub import gpu_task

    global _GPU_SERVICE
    if not settings.zero_gpu():
        return service.compare
    _GPU_SERVICE = service
    on_gpu = gpu_task(compare_on_gpu, duration=120)

    def run(path, *, domain: str = "auto", name: str | None = None, progress=None) -> Comparison:
        if progress is not None:
            progress(0.0, "waiting for a GPU")
        return on_gpu(str(path), str(domain or "auto"), str(name or Path(path).name))

    return run


class CompareHandlers:
    """The compare tab's event handlers over ``service`` and ``store``."""

    def __init__(self, service: Service, store, page: ComparePage, run_models=None) -> None:
        self.service, self.store, self.page = service, store, page
        self.run_models = run_models or model_runner(service)

    def compare(self, upload: str | None, record: str | None = None, domain: str = "auto", request: gr.Request = None,
                profile: gr.OAuthProfile | None = None, progress=gr.Progress()):
        """Run the three detectors of a model set on one image or sound.

        Args:
            upload: an image (PNG, JPEG, BMP, TIFF, WebP) or audio file (WAV, FLAC, OGG, MP3).
            record: a recorded sound, used when nothing is uploaded.
            domain: the model set: "auto" (by file type), or one of the registry's domains.
        Returns:
            the comparison as JSON (with the ``item_id`` under which the review store keeps it;
            ``map_file`` and ``normal_file`` name files of the second output), and the maps (.npy)
            and normal versions (.png) as files.
        """
        from decodemo.app.review import reviewer_name

        path = upload or record
        if not path:
            raise user_error("Upload an image or a sound, record one, or pick an example first.")
        try:
            comp = self.run_models(path, domain=domain or "auto", name=Path(path).name,
                                   progress=lambda frac, desc: progress(frac, desc=desc))
        except DecodemoError as exc:
            raise user_error(str(exc), title="This input cannot be analysed") from None
        try:  # the store writes each map once; the result names those files
            item_id = self.store.record(comp, user=reviewer_name(request, profile))
            map_files = self.store.map_files(item_id)
        except Exception as exc:  # the comparison still answers; the person is told it was not kept
            item_id, map_files = None, None
            gr.Warning(f"The result could not be stored for review ({type(exc).__name__}: {exc}).")
        res = comp.to_json(_results_dir() / comp.id, map_files=map_files)
        res["item_id"] = item_id
        files = [m[k] for m in res["methods"] for k in ("map_file", "normal_file") if m[k]]
        for m in res["methods"]:  # the files travel as files; the result names them, not server paths
            for k in ("map_file", "normal_file"):
                m[k] = Path(m[k]).name if m[k] else None
        return res, files

    def _held(self, result: dict | None) -> Comparison | None:
        if not result or "id" not in result:
            return None
        try:
            return self.service.result(result["id"])
        except DecodemoError as exc:
            raise user_error(str(exc)) from None

    def draw(self, result: dict | None, opacity: float, *thresholds: float, reset: bool = False,
             plots: bool = True) -> dict:
        """Everything the page shows for a held result (no model runs), as ``{component: update}``
        (without ``plots``: all but the three plots, which :meth:`plots` draws)."""
        comp = self._held(result)
        if comp is None:
            return {}
        if not reset:
            by_method = {o.method: o for o in comp.outcomes}
            wanted = {m: _snap(t, by_method[m]) for m, t in zip(METHOD_ORDER, thresholds) if m in by_method}
            comp = comp.with_thresholds({m: t for m, t in wanted.items() if t is not None})
        page, audio = self.page, comp.modality == "audio"
        out: dict[Any, Any] = {page.summary: _summary_md(comp),
                               page.player: gr.update(value=comp.path if audio else None, visible=audio)}
        by_method = {o.method: o for o in comp.outcomes}
        for m, panel in page.panels.items():
            out.update(_panel_updates(comp, by_method.get(m), panel, opacity, reset))
        if plots:
            out.update(self._plots(comp))
        return out

    def _plots(self, comp: Comparison) -> dict:
        from decodemo.app import render

        audio, page = comp.modality == "audio", self.page
        return {page.reference_plot: render.reference_figure(comp), page.latency_plot: render.latency_figure(comp),
                page.audio_plot: gr.update(value=render.audio_figure(comp) if audio else None, visible=audio)}

    def plots(self, result: dict | None) -> dict:
        """The plots of a new result, drawn after its verdict and pictures are on screen."""
        comp = self._held(result)
        return {} if comp is None else self._plots(comp)

    def failed(self) -> str:
        """The summary after a failed run: the old results stay greyed and are named as old."""
        return ("## No result for this input\n\nThe comparison stopped with the message shown in the corner. "
                "The greyed results below belong to the previous input.")

    def draw_new(self, result, opacity) -> dict:
        """A new result: the verdict, the pictures and the controls at its thresholds (the plots follow)."""
        return self.draw(result, opacity, reset=True, plots=False)

    def draw_selected(self, result, opacity) -> dict:
        """A result picked from the batch table: everything at its thresholds, plots included."""
        return self.draw(result, opacity, reset=True)

    def refresh_domains(self, current: str | None):
        """Re-read the user registries (model sets fitted since the start) into the model-set list."""
        self.service.refresh()
        choices = domain_choices(self.service)
        keep = current if current in {v for _, v in choices} else "auto"
        return gr.update(choices=choices, value=keep)

    def defaults(self, result) -> dict:
        """Put every threshold control back to the model's current threshold."""
        comp = self._held(result)
        if comp is None:
            return {}
        return {self.page.panels[o.method].threshold: gr.update(value=self.service.threshold(o.model))
                for o in comp.outcomes if o.method in self.page.panels}


def _panel_updates(comp: Comparison, o, panel: MethodPanel, opacity: float, reset: bool) -> dict:
    """One method column's updates (hidden when the model set has no model of that method)."""
    from decodemo.app import render

    if o is None:
        return {panel.column: gr.update(visible=False)}
    nv = render.normal_version(comp, o)
    lo, hi, step = _slider_range(o)
    return {
        panel.column: gr.update(visible=True),
        panel.head: _method_md(o),
        panel.overlay: render.method_overlay(comp, o, opacity),
        panel.normal: gr.update(value=nv, visible=nv is not None),
        panel.threshold: (gr.update(minimum=lo, maximum=hi, step=step, value=_shown_threshold(o.threshold, step)) if reset
                          else gr.update()),
    }
