"""Drawing a comparison: map overlays (numpy) and the plotly charts of the compare view.

Pure functions of a :class:`decodemo.service.Comparison`; the app calls them again when a
person moves the opacity or a threshold control, without re-running any model.
"""

from __future__ import annotations

import numpy as np

__all__ = ["colormap", "overlay", "for_display", "spectrogram_rgb", "method_overlay", "normal_version",
           "reference_figure", "latency_figure", "audio_figure"]

# "inferno"-like anchors (value, R, G, B)
_ANCHORS = np.array([
    [0.00, 0, 0, 4], [0.15, 40, 11, 84], [0.30, 101, 21, 110], [0.45, 159, 42, 99],
    [0.60, 212, 72, 66], [0.75, 245, 125, 21], [0.90, 250, 193, 39], [1.00, 252, 255, 164],
], dtype=np.float64)
_LUT = np.stack([np.interp(np.linspace(0, 1, 256), _ANCHORS[:, 0], _ANCHORS[:, c]) for c in (1, 2, 3)], 1)
_LUT = _LUT.round().astype(np.uint8)
COLOURS = {"decodiff": "#1f77b4", "recon": "#2ca02c", "invad": "#d62728"}
MASK_RGB = np.array([0, 255, 255], dtype=np.float32)
#: the longest side of an image as drawn in the page (shown at about 300 px, full screen at most
#: this); the full-resolution maps travel as .npy files. A 900 px bottle drawn at full size cost
#: about 1.5 s of PNG encoding per result for the nine pictures.
DISPLAY_MAX = 640


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


def for_display(*arrays):
    """Images, maps and masks of an input larger than :data:`DISPLAY_MAX` scaled down to fit it
    (area-averaged; a mask stays a mask), the others as they are; ``None`` passes through."""
    from PIL import Image

    first = next(a for a in arrays if a is not None)
    h, w = first.shape[:2]
    if max(h, w) <= DISPLAY_MAX:
        return arrays
    size = (max(1, round(w * DISPLAY_MAX / max(h, w))), max(1, round(h * DISPLAY_MAX / max(h, w))))
    out = []
    for a in arrays:
        if a is None:
            out.append(None)
        elif a.dtype == bool:
            out.append(np.asarray(Image.fromarray(a.astype(np.uint8) * 255).resize(size, Image.BOX)) >= 128)
        elif a.ndim == 3:
            out.append(np.asarray(Image.fromarray(a).resize(size, Image.BOX)))
        else:
            out.append(np.asarray(Image.fromarray(a.astype(np.float32)).resize(size, Image.BOX)))
    return tuple(out)


def method_overlay(comp, outcome, opacity: float = 0.5) -> np.ndarray:
    """The method's map over the input (audio: over the spectrogram), defect mask outlined."""
    lo, hi = _map_range(outcome)
    mask = outcome.shown_mask  # drawn only where the decision is anomalous
    if comp.modality == "audio":  # resampled to a legible strip whatever the clip's length
        size = _strip_size(*comp.input.shape)
        return overlay(spectrogram_rgb(_strip(comp.input, size)), np.flipud(_strip(outcome.map, size)), lo=lo,
                       hi=hi, opacity=opacity, mask=None if mask is None else np.flipud(_strip(mask, size)))
    base, values, mask = for_display(comp.input, outcome.map, None if mask is None else mask.astype(bool))
    return overlay(base, values, lo=lo, hi=hi, opacity=opacity, mask=mask)


def normal_version(comp, outcome) -> tuple[np.ndarray, np.ndarray] | None:
    """(input, the method's normal version) as RGB for a before/after slider, or None."""
    if outcome.reconstruction is None:
        return None
    if comp.modality == "audio":
        size = _strip_size(*comp.input.shape)
        return spectrogram_rgb(_strip(comp.input, size)), spectrogram_rgb(_strip(outcome.reconstruction, size))
    return for_display(comp.input, outcome.reconstruction)


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


# ---------------------------------------------------------------------------- audio
#: most columns the audio figure draws, about one per screen pixel of a full-width row (more would
#: be dropped by the browser's scaling and weigh megabytes per redraw); longer clips are max-pooled
AUDIO_MAX_COLUMNS = 1200
#: pixel heights of the audio figure's rows, whatever the clip's length
SPECTROGRAM_ROW_PX, MAP_ROW_PX, CURVE_ROW_PX, ROW_GAP_PX = 150, 140, 80, 44
#: a sound's map images: at least this many pixels high, width between 1 and this many heights
STRIP_MIN_HEIGHT, STRIP_MAX_ASPECT = 256, 2.5


def _bin_starts(n: int, bins: int) -> np.ndarray:
    """First index of each of ``bins`` near-equal consecutive bins over ``n`` items (bins <= n)."""
    return np.floor(np.arange(bins) * (n / bins)).astype(np.int64)


def _resample(a: np.ndarray, n: int, axis: int) -> np.ndarray:
    """``a`` with ``n`` entries along ``axis``: the maximum over bins when shrinking (a click
    of one frame stays visible), nearest neighbour when growing."""
    size = a.shape[axis]
    if n == size:
        return a
    if n < size:
        return np.maximum.reduceat(a, _bin_starts(size, n), axis=axis)
    return np.take(a, np.minimum((np.arange(n) + 0.5) * (size / n), size - 1).astype(np.int64), axis=axis)


def _strip_size(n_mels: int, frames: int) -> tuple[int, int]:
    """(height, width) of a sound's map image: at least ``STRIP_MIN_HEIGHT`` high, at the
    spectrogram's aspect but no narrower than square and no wider than ``STRIP_MAX_ASPECT``
    (a 60 s clip is not a 20 px sliver in its column, a 0.5 s one not a thin post)."""
    h = max(STRIP_MIN_HEIGHT, n_mels)
    w = int(np.clip(round(frames * h / n_mels), h, STRIP_MAX_ASPECT * h))
    return h, w


def _strip(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A (n_mels, frames) array resampled to ``size`` (see :func:`_resample`)."""
    return _resample(_resample(a, size[0], 0), size[1], 1)


def _frame_bins(comp, max_columns: int) -> tuple[np.ndarray, np.ndarray]:
    """(first frame of each drawn column, the column's centre time in s): every frame up to
    ``max_columns`` frames, else bins of an equal number of frames."""
    n = comp.input.shape[1]
    step = max(1, int(np.ceil(n / max_columns)))
    starts = np.arange(0, n, step)
    t = np.asarray(comp.frame_times, dtype=np.float64)
    centres = np.add.reduceat(t, starts) / np.diff(np.append(starts, n))
    return starts, centres


def _duration(comp) -> float:
    """The clip's length in s (from the waveform; else the frames, one hop each)."""
    if comp.waveform is not None and comp.sample_rate:
        return len(comp.waveform) / float(comp.sample_rate)
    t = np.asarray(comp.frame_times, dtype=np.float64)
    return float(t[-1] + (t[1] - t[0])) if len(t) > 1 else float(t[-1]) + 1e-3


def _heat_scale() -> list:
    """The map images' inferno-like colours as a plotly colour scale."""
    return [[float(v), f"rgb({int(r)},{int(g)},{int(b)})"] for v, r, g, b in _ANCHORS]


def audio_figure(comp, *, max_columns: int = AUDIO_MAX_COLUMNS):
    """Audio: one figure on one time axis in seconds (zoom along time; the frequency and score
    axes stay fixed): the input spectrogram, then per method a full-width row with its map and
    a row with its per-frame score and threshold.

    Rows keep their pixel height whatever the clip's length (``SPECTROGRAM_ROW_PX``,
    ``MAP_ROW_PX``, ``CURVE_ROW_PX``); clips of more than ``max_columns`` frames are drawn as
    the maximum over bins of equal frames, so a 60 s clip stays light and a one-frame click
    still shows. Map colours run from the normal median (dark) to twice the way to the pixel
    threshold, the threshold mid-scale; the per-frame score is the map's maximum over frequency.
    """
    import plotly.graph_objects as go

    starts, t = _frame_bins(comp, max_columns)
    t = t.astype(np.float32)
    hz = np.asarray(comp.band_hz, dtype=np.float32)
    few = len(t) < 100  # a short clip: markers make each frame's score visible
    spec = (np.clip(np.maximum.reduceat(comp.input, starts, axis=1), 0, 1) * 255).round().astype(np.uint8)
    rows = [("spectrogram", None, SPECTROGRAM_ROW_PX, "Input: log-mel spectrogram")]  # (kind, outcome, px, title)
    for o, title in zip(comp.outcomes, _titles(comp)):
        rows += [("map", o, MAP_ROW_PX, f"{title}: anomaly map"),
                 ("frames", o, CURVE_ROW_PX, f"{title}: per-frame score (highest map value per frame)"
                  + (", dashed: threshold" if o.pixel_threshold is not None else ""))]
    margin = dict(l=70, r=90, t=34, b=46)
    area = sum(row[2] for row in rows) + ROW_GAP_PX * (len(rows) - 1)
    fig = go.Figure()
    top = 0.0  # pixels from the top of the plotting area
    for i, (kind, o, px, title) in enumerate(rows, start=1):
        lo_y, hi_y = 1.0 - (top + px) / area, 1.0 - top / area
        axis = "" if i == 1 else str(i)
        fig.update_layout({f"xaxis{axis}": dict(anchor=f"y{axis}", domain=[0, 1], showticklabels=True,
                                                **({} if i == 1 else {"matches": "x"})),
                           f"yaxis{axis}": dict(anchor=f"x{axis}", domain=[max(lo_y, 0.0), min(hi_y, 1.0)],
                                                fixedrange=True)})
        fig.add_annotation(text=f"<b>{title}</b>", xref="paper", yref="paper", x=0, y=hi_y, xanchor="left",
                           yanchor="bottom", yshift=2, showarrow=False, font=dict(size=12))
        refs = dict(xaxis=f"x{axis}", yaxis=f"y{axis}")
        if kind == "spectrogram":
            fig.add_trace(go.Heatmap(x=t, y=hz, z=spec, zmin=0, zmax=255, colorscale="gray", showscale=False,
                                     name="spectrogram", hovertemplate="%{x:.3f} s, %{y:.0f} Hz<extra></extra>",
                                     **refs))
            fig.update_layout({f"yaxis{axis}": dict(title_text="Hz", type="log")})
        elif kind == "map":
            lo, hi = _map_range(o)
            hi = max(hi, lo + 1e-6)  # a flat map still gets a scale
            z = np.maximum.reduceat(o.map.astype(np.float32), starts, axis=1)
            ticks = [lo, hi] if o.pixel_threshold is None else [lo, o.pixel_threshold, hi]
            names = [f"{v:.3g}" for v in ticks]
            if o.pixel_threshold is not None:
                names[1] += " thr."
            fig.add_trace(go.Heatmap(
                x=t, y=hz, z=z, zmin=lo, zmax=hi, colorscale=_heat_scale(), name=o.method,
                colorbar=dict(x=1.005, xanchor="left", y=(lo_y + hi_y) / 2, len=px / area, thickness=10,
                              tickvals=ticks, ticktext=names, tickfont=dict(size=10)),
                hovertemplate="%{x:.3f} s, %{y:.0f} Hz: %{z:.4g}<extra>" + o.method + "</extra>", **refs))
            fig.update_layout({f"yaxis{axis}": dict(title_text="Hz", type="log")})
        else:
            scores = o.frame_scores if o.frame_scores is not None else o.map.max(axis=0)
            y = np.maximum.reduceat(np.asarray(scores, dtype=np.float32), starts)
            span = [float(y.min()), float(y.max())] + ([o.pixel_threshold] if o.pixel_threshold is not None else [])
            pad = 0.08 * (max(span) - min(span)) or 1e-3  # the threshold stays in view (the axis is fixed)
            fig.add_trace(go.Scatter(x=t, y=y, mode="lines+markers" if few else "lines", name=o.method,
                                     line=dict(color=COLOURS.get(o.method, "#555"), width=1.5),
                                     marker=dict(size=4),
                                     hovertemplate="%{x:.3f} s: %{y:.4g}<extra>" + o.method + "</extra>", **refs))
            if o.pixel_threshold is not None:
                fig.add_shape(type="line", x0=0, x1=1, xref=f"x{axis} domain", y0=o.pixel_threshold,
                              y1=o.pixel_threshold, yref=f"y{axis}", line=dict(color="black", dash="dash", width=1))
            fig.update_layout({f"yaxis{axis}": dict(title_text="score", range=[min(span) - pad, max(span) + pad])})
        top += px + ROW_GAP_PX
    fig.update_xaxes(range=[0.0, _duration(comp)])
    fig.update_layout({f"xaxis{'' if len(rows) == 1 else len(rows)}": dict(title_text="time (s)")})
    fig.update_layout(height=area + margin["t"] + margin["b"], margin=margin, showlegend=False, dragmode="zoom",
                      uirevision=comp.id, hovermode="closest")
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
