"""Drawing a comparison: map overlays (numpy) and the plotly charts of the compare view.

Pure functions of a :class:`decodemo.service.Comparison`; the app calls them again when a
person moves the opacity or a threshold control, without re-running any model.
"""

from __future__ import annotations

import numpy as np

__all__ = ["colormap", "overlay", "spectrogram_rgb", "method_overlay", "normal_version",
           "reference_figure", "latency_figure", "frame_figure", "spectrogram_figure"]

# "inferno"-like anchors (value, R, G, B)
_ANCHORS = np.array([
    [0.00, 0, 0, 4], [0.15, 40, 11, 84], [0.30, 101, 21, 110], [0.45, 159, 42, 99],
    [0.60, 212, 72, 66], [0.75, 245, 125, 21], [0.90, 250, 193, 39], [1.00, 252, 255, 164],
], dtype=np.float64)
_LUT = np.stack([np.interp(np.linspace(0, 1, 256), _ANCHORS[:, 0], _ANCHORS[:, c]) for c in (1, 2, 3)], 1)
_LUT = _LUT.round().astype(np.uint8)
COLOURS = {"decodiff": "#1f77b4", "recon": "#2ca02c", "invad": "#d62728"}
MASK_RGB = np.array([0, 255, 255], dtype=np.float32)


def colormap(v: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> RGB uint8 (an inferno-like scale)."""
    idx = np.clip(np.nan_to_num(v) * 255.0, 0, 255).astype(np.uint8)
    return _LUT[idx]


def _contour(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it (the outline), 2 px thick."""
    m = mask.astype(bool)
    inner = m.copy()
    for axis in (0, 1):
        for shift in (1, -1, 2, -2):
            inner &= np.roll(m, shift, axis=axis)
    return m & ~inner


def overlay(base: np.ndarray, values: np.ndarray, *, lo: float, hi: float, opacity: float = 0.5,
            mask: np.ndarray | None = None) -> np.ndarray:
    """Blend a heat map of ``values`` (scaled ``lo`` -> 0, ``hi`` -> 1) over ``base`` (H, W, 3)
    uint8; values at or below ``lo`` stay clear. ``mask`` is outlined in cyan."""
    span = hi - lo if hi > lo else 1.0
    v = np.clip((values.astype(np.float32) - lo) / span, 0.0, 1.0)
    alpha = (float(np.clip(opacity, 0.0, 1.0)) * np.sqrt(v))[..., None]
    out = base.astype(np.float32) * (1.0 - alpha) + colormap(v).astype(np.float32) * alpha
    if mask is not None and mask.any():
        out[_contour(mask)] = MASK_RGB
    return out.round().clip(0, 255).astype(np.uint8)


def spectrogram_rgb(spec: np.ndarray) -> np.ndarray:
    """A (n_mels, frames) spectrogram in [0, 1] -> RGB uint8 with low frequencies at the bottom."""
    g = (np.flipud(np.clip(spec, 0, 1)) * 255).round().astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def _map_range(outcome) -> tuple[float, float]:
    """Colour range of a map: the normal median pixel -> clear, twice the way to the pixel
    threshold -> full colour (the threshold sits mid-scale). Without a reference: min..max."""
    m = outcome.map
    if outcome.pixel_threshold is not None and outcome.pixel_quantiles:
        lo = float(np.interp(0.5, outcome.pixel_quantiles["q"], outcome.pixel_quantiles["v"]))
        hi = lo + 2.0 * max(outcome.pixel_threshold - lo, 1e-6)
        return lo, hi
    return float(m.min()), float(m.max())


def method_overlay(comp, outcome, opacity: float = 0.5) -> np.ndarray:
    """The method's map over the input (audio: over the spectrogram), defect mask outlined."""
    lo, hi = _map_range(outcome)
    mask = outcome.mask
    if comp.modality == "audio":
        return overlay(spectrogram_rgb(comp.input), np.flipud(outcome.map), lo=lo, hi=hi, opacity=opacity,
                       mask=None if mask is None else np.flipud(mask))
    return overlay(comp.input, outcome.map, lo=lo, hi=hi, opacity=opacity, mask=mask)


def normal_version(comp, outcome) -> tuple[np.ndarray, np.ndarray] | None:
    """(input, the method's normal version) as RGB for a before/after slider, or None."""
    if outcome.reconstruction is None:
        return None
    if comp.modality == "audio":
        return spectrogram_rgb(comp.input), spectrogram_rgb(outcome.reconstruction)
    return comp.input, outcome.reconstruction


def _titles(comp):
    from decodemo.service import METHOD_TITLES

    return [METHOD_TITLES.get(o.method, o.method) for o in comp.outcomes]


def reference_figure(comp):
    """Per method: this input's score against the normal reference scores and the threshold."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    n = len(comp.outcomes)
    fig = make_subplots(rows=1, cols=n, subplot_titles=_titles(comp), horizontal_spacing=0.08)
    for i, o in enumerate(comp.outcomes, start=1):
        colour = COLOURS.get(o.method, "#555")
        if o.reference_scores:
            fig.add_trace(go.Box(x=o.reference_scores, name="normal", boxpoints="all", jitter=0.4, pointpos=0,
                                 marker=dict(color="#888", size=5), line=dict(color="#888"), showlegend=i == 1,
                                 legendgroup="normal", hovertemplate="normal reference: %{x:.4g}<extra></extra>"),
                          row=1, col=i)
        fig.add_trace(go.Scatter(x=[o.score], y=["normal"] if o.reference_scores else [0], mode="markers",
                                 marker=dict(symbol="star", size=18, color=colour, line=dict(color="black", width=1)),
                                 name="this input", showlegend=i == 1, legendgroup="input",
                                 hovertemplate=f"this input: %{{x:.4g}} ({o.decision})<extra></extra>"),
                      row=1, col=i)
        fig.add_vline(x=o.threshold, line=dict(color="black", dash="dash", width=1.5), row=1, col=i)
        fig.update_xaxes(title_text="score", row=1, col=i)
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line=dict(color="black", dash="dash"),
                             name="threshold"), row=1, col=1)
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(height=300, margin=dict(l=20, r=20, t=50, b=40), legend=dict(orientation="h", y=-0.3),
                      title=dict(text="Scores against each model's normal reference", x=0.01, font=dict(size=14)))
    return fig


def latency_figure(comp):
    """Bar chart of the three methods' latencies (NFE in the labels)."""
    import plotly.graph_objects as go

    titles = _titles(comp)
    fig = go.Figure(go.Bar(
        x=titles, y=[o.latency_ms for o in comp.outcomes],
        marker_color=[COLOURS.get(o.method, "#555") for o in comp.outcomes],
        text=[f"{o.latency_ms:.0f} ms, NFE {o.nfe}" for o in comp.outcomes], textposition="auto",
        hovertemplate="%{x}: %{y:.0f} ms<extra></extra>"))
    fig.update_layout(height=300, margin=dict(l=40, r=20, t=50, b=40), yaxis_title="latency (ms)",
                      title=dict(text="Latency per method", x=0.01, font=dict(size=14)))
    return fig


def frame_figure(comp):
    """Audio: each method's per-frame score over time (seconds) with its threshold, one row per
    method (the methods' scores have different units)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    n = len(comp.outcomes)
    fig = make_subplots(rows=n, cols=1, shared_xaxes=True, subplot_titles=_titles(comp), vertical_spacing=0.08)
    t = comp.frame_times
    for i, o in enumerate(comp.outcomes, start=1):
        colour = COLOURS.get(o.method, "#555")
        fig.add_trace(go.Scatter(x=t, y=o.frame_scores, mode="lines", line=dict(color=colour, width=1.5),
                                 name=o.method, hovertemplate="%{x:.2f} s: %{y:.4g}<extra></extra>"), row=i, col=1)
        if o.pixel_threshold is not None:
            fig.add_hline(y=o.pixel_threshold, line=dict(color="black", dash="dash", width=1), row=i, col=1,
                          annotation_text="threshold", annotation_position="top left")
    fig.update_xaxes(title_text="time (s)", row=n, col=1)
    fig.update_layout(height=120 + 140 * n, margin=dict(l=50, r=20, t=60, b=40), showlegend=False,
                      title=dict(text="Per-frame score over time (highest map value per frame)", x=0.01,
                                 font=dict(size=14)))
    return fig


def spectrogram_figure(comp, opacity: float = 0.5, max_frames: int = 400):
    """Audio: the spectrogram with each method's map over it, axes in seconds and Hz."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    n = len(comp.outcomes)
    step = max(1, int(np.ceil(comp.input.shape[1] / max_frames)))
    t = comp.frame_times[::step]
    hz = comp.band_hz
    fig = make_subplots(rows=n, cols=1, shared_xaxes=True, subplot_titles=_titles(comp), vertical_spacing=0.07)
    a = float(np.clip(opacity, 0, 1))
    heat = [[0.0, "rgba(252,255,164,0)"], [0.25, f"rgba(245,125,21,{0.35 * a:.3f})"],
            [0.5, f"rgba(212,72,66,{0.7 * a:.3f})"], [1.0, f"rgba(159,42,99,{a:.3f})"]]
    for i, o in enumerate(comp.outcomes, start=1):
        fig.add_trace(go.Heatmap(x=t, y=hz, z=comp.input[:, ::step], colorscale="gray", showscale=False,
                                 hovertemplate="%{x:.2f} s, %{y:.0f} Hz<extra></extra>"), row=i, col=1)
        lo, hi = _map_range(o)
        z = np.clip((o.map[:, ::step] - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
        fig.add_trace(go.Heatmap(x=t, y=hz, z=z, zmin=0, zmax=1, colorscale=heat, showscale=False,
                                 hovertemplate="%{x:.2f} s, %{y:.0f} Hz: %{z:.2f}<extra>" + o.method + "</extra>"),
                      row=i, col=1)
        fig.update_yaxes(title_text="Hz", type="log", row=i, col=1)
    fig.update_xaxes(title_text="time (s)", row=n, col=1)
    fig.update_layout(height=120 + 200 * n, margin=dict(l=60, r=20, t=60, b=40),
                      title=dict(text="Spectrogram with each method's anomaly map", x=0.01, font=dict(size=14)))
    return fig


# ---------------------------------------------------------------------------- dashboard
def _model_colour(entry) -> str:
    return COLOURS.get(entry.get("method"), "#555")


def metrics_figure(fb):
    """Precision, recall and F1 of each model's decisions against the reviewers' verdicts, and
    the pixel IoU of its masks against corrected masks."""
    import plotly.graph_objects as go

    models = [m for m in fb["models"].values() if m["n_reviewed"]]
    fig = go.Figure()
    for key, colour in (("precision", "#1f77b4"), ("recall", "#ff7f0e"), ("f1", "#2ca02c"), ("pixel_iou", "#9467bd")):
        fig.add_trace(go.Bar(name=key.replace("_", " "), x=[m["model"] for m in models],
                             y=[m.get(key) if m.get(key) is not None else 0 for m in models], marker_color=colour,
                             text=[f"{m[key]:.2f}" if m.get(key) is not None else "-" for m in models],
                             textposition="outside"))
    fig.update_layout(barmode="group", height=340, yaxis=dict(range=[0, 1.12], title="against reviews"),
                      margin=dict(l=40, r=20, t=50, b=40), legend=dict(orientation="h", y=-0.2),
                      title=dict(text="Decisions against reviewer verdicts", x=0.01, font=dict(size=14)))
    return fig


def confusion_figure(fb):
    """One confusion matrix per model (rows: reviewers' verdict; columns: the model's decision)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    models = [m for m in fb["models"].values() if m.get("confusion")]
    n = max(1, len(models))
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[m["model"] for m in models] or ["no reviews yet"],
                        horizontal_spacing=0.08, vertical_spacing=0.2)
    for k, m in enumerate(models):
        z = np.array(m["confusion"])
        fig.add_trace(go.Heatmap(z=z, x=["said normal", "said anomalous"], y=["normal", "anomalous"],
                                 colorscale="Blues", showscale=False, text=z, texttemplate="%{text}",
                                 hovertemplate="truth %{y}, %{x}: %{z}<extra></extra>"),
                      row=k // cols + 1, col=k % cols + 1)
    fig.update_layout(height=180 + 170 * rows, margin=dict(l=60, r=20, t=60, b=30),
                      title=dict(text="Confusion matrices (rows: reviewers' verdict)", x=0.01, font=dict(size=14)))
    return fig


def curves_figure(fb):
    """ROC and precision-recall curves of each model's scores over the reviewed items."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=["ROC", "Precision-recall"])
    for m in fb["models"].values():
        if "roc" in m:
            fig.add_trace(go.Scatter(x=m["roc"]["fpr"], y=m["roc"]["tpr"], mode="lines",
                                     name=f"{m['model']} (AUROC {m['auroc']:.2f})", line=dict(shape="hv")),
                          row=1, col=1)
        if "pr" in m:
            fig.add_trace(go.Scatter(x=m["pr"]["recall"], y=m["pr"]["precision"], mode="lines+markers",
                                     name=f"{m['model']} PR", showlegend=False), row=1, col=2)
    fig.update_xaxes(title_text="false-positive rate", range=[0, 1], row=1, col=1)
    fig.update_yaxes(title_text="true-positive rate", range=[0, 1.02], row=1, col=1)
    fig.update_xaxes(title_text="recall", range=[0, 1], row=1, col=2)
    fig.update_yaxes(title_text="precision", range=[0, 1.02], row=1, col=2)
    fig.update_layout(height=360, margin=dict(l=50, r=20, t=50, b=40), legend=dict(orientation="h", y=-0.25),
                      title=dict(text="Scores over reviewed items", x=0.01, font=dict(size=14)))
    return fig
