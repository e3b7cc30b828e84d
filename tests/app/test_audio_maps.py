"""A sound's results are readable at any length: the Compare view's audio figure keeps full-width
rows of a fixed pixel height on one time axis in seconds for a 0.5 s and a 60 s clip, draws a
bounded number of columns for the long one, and draws the detectors' own maps; the per-method
map images are legible strips.

The comparisons are built from a real decoded clip (synthetic hum with clicks, written as WAV and
read by the inference layer) with maps made from its spectrogram, so no model runs."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest

from decodemo.app import render
from decodemo.data.synthetic import SAMPLE_RATE, make_hum
from decodemo.inference import load_input
from decodemo.io.spectrogram import frame_times, mel_band_hz
from decodemo.service import METHOD_ORDER
from decodemo.service.results import Comparison, MethodOutcome

MIN_ROW_PX = 120


def _comparison(tmp_path, seconds: float) -> tuple[Comparison, list[dict]]:
    """A comparison of a ``seconds`` hum with clicks; each method's map is its own scale of the
    spectrogram's change over time (high at the clicks) plus a little noise."""
    import soundfile as sf

    y, events = make_hum(np.random.default_rng(7), seconds=seconds, sample_rate=SAMPLE_RATE, anomaly="click")
    path = tmp_path / f"hum_{seconds:g}s.wav"
    sf.write(path, y, SAMPLE_RATE)
    loaded = load_input(path)
    spec = loaded.spectrogram.astype(np.float32)
    change = np.abs(np.diff(spec, axis=1, prepend=spec[:, :1]))
    rng = np.random.default_rng(3)
    outcomes = []
    for k, method in enumerate(METHOD_ORDER):
        m = (k + 1.0) * change + 0.01 * rng.random(spec.shape, dtype=np.float32)
        outcomes.append(MethodOutcome(
            method=method, model=f"hum/{method}", revision="bundled:test", score=float(m.max()), threshold=1.0,
            default_threshold=1.0, decision="anomalous", percentile=99.0, nfe=1, latency_ms=1.0, map=m,
            pixel_threshold=float(np.quantile(m, 0.99)), reference_scores=[0.5, 0.8],
            pixel_quantiles={"q": [0.5, 0.99], "v": [float(np.median(m)), float(np.quantile(m, 0.99))]},
            reconstruction=np.clip(spec - 0.5 * change, 0, 1), frame_scores=m.max(axis=0)))
    mel = loaded.mel
    comp = Comparison(id=f"clip{seconds:g}", modality="audio", domain="hum", name=path.name, sha256="0" * 64,
                      input=spec, outcomes=outcomes, seconds=0.0, waveform=loaded.waveform,
                      sample_rate=mel.sample_rate, frame_times=frame_times(spec.shape[1], mel),
                      band_hz=mel_band_hz(mel), path=str(path))
    return comp, events


@pytest.fixture(scope="module", params=[0.5, 60.0], ids=["0.5s", "60s"])
def clip(request, tmp_path_factory):
    comp, events = _comparison(tmp_path_factory.mktemp("audio_maps"), request.param)
    t0 = time.perf_counter()
    fig = render.audio_figure(comp)
    return request.param, comp, events, fig, time.perf_counter() - t0


def _row_px(fig, axis: str) -> float:
    """Pixel height of the row on y axis ``axis`` ("y", "y2", ...)."""
    lay = fig.layout
    lo, hi = lay[axis.replace("y", "yaxis", 1)].domain
    return (hi - lo) * (lay.height - lay.margin.t - lay.margin.b)


def _traces(fig, kind: str) -> dict[str, object]:
    return {t.name: t for t in fig.data if t.type == kind}


def test_one_full_width_row_per_method_of_legible_height(clip):
    seconds, comp, _, fig, _ = clip
    heat = _traces(fig, "heatmap")
    curves = _traces(fig, "scatter")
    assert list(heat) == ["spectrogram", *METHOD_ORDER]  # the input on top, then one map row per method
    assert list(curves) == list(METHOD_ORDER)
    rows = [t.yaxis for t in fig.data]
    assert len(set(rows)) == len(rows)  # every map and curve on its own row
    for name, t in heat.items():
        assert _row_px(fig, t.yaxis) >= MIN_ROW_PX, (seconds, name)
        x_axis = fig.layout[t.xaxis.replace("x", "xaxis", 1)]
        assert tuple(x_axis.domain) == (0, 1)  # full width
    # the same pixel heights whatever the clip's length
    assert _row_px(fig, heat["decodiff"].yaxis) == pytest.approx(render.MAP_ROW_PX)
    assert fig.layout.height < 1400


def test_a_shared_time_axis_in_seconds_over_the_whole_clip(clip):
    seconds, comp, _, fig, _ = clip
    lay = fig.layout
    axes = list(fig.select_xaxes())
    assert len(axes) == len(fig.data)
    assert all(a.matches == "x" for a in axes if a is not lay.xaxis)  # zooming one row zooms them all
    assert tuple(lay.xaxis.range) == pytest.approx((0.0, seconds), abs=1e-3)
    assert all(a.fixedrange for a in fig.select_yaxes())  # a drag zooms in time only
    for t in fig.data:
        x = np.asarray(t.x)
        assert 0.0 <= x[0] < 0.05 and seconds - 0.05 <= x[-1] <= seconds  # centres of frames or bins
        assert np.all(np.diff(x) > 0)
    assert any("time (s)" in (a.title.text or "") for a in axes)


def test_drawn_columns_are_bounded_and_short_clips_keep_every_frame(clip):
    seconds, comp, _, fig, _ = clip
    frames = comp.input.shape[1]
    for t in _traces(fig, "heatmap").values():
        z = np.asarray(t.z)
        assert z.shape == (comp.input.shape[0], len(t.x))
        if seconds < 1:
            assert z.shape[1] == frames == 32  # 0.5 s at hop 256 / 16 kHz
        else:
            assert frames == 3751 and z.shape[1] <= render.AUDIO_MAX_COLUMNS
    if seconds > 1:
        assert len(fig.to_json()) < 3_500_000  # the page stays light (about 2.6 MB at 1,200 columns)


def test_the_drawn_values_are_the_detectors_maps(clip):
    seconds, comp, events, fig, _ = clip
    frames = comp.input.shape[1]
    step = int(np.ceil(frames / render.AUDIO_MAX_COLUMNS))
    heat, curves = _traces(fig, "heatmap"), _traces(fig, "scatter")
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    for o in comp.outcomes:
        z = np.asarray(heat[o.method].z)
        expected = o.map if step == 1 else np.stack(
            [o.map[:, i:i + step].max(axis=1) for i in range(0, frames, step)], axis=1)
        np.testing.assert_array_equal(z, expected)  # every frame, or the maximum over its bin
        assert heat[o.method].zmin < o.pixel_threshold < heat[o.method].zmax
        np.testing.assert_allclose(np.asarray(curves[o.method].y), expected.max(axis=0), rtol=1e-6)
        assert any(s.y0 == s.y1 == pytest.approx(o.pixel_threshold) and s.yref == curves[o.method].yaxis
                   for s in lines)  # each method's threshold on its own curve
        # the drawn map is highest at a click
        peak = float(np.asarray(heat[o.method].x)[z.max(axis=0).argmax()])
        assert min(abs(peak - 0.5 * (e["start_s"] + e["end_s"])) for e in events) < 0.05
    spec = np.asarray(heat["spectrogram"].z)
    assert spec.dtype == np.uint8 and spec.max() > 100  # the input itself, not a blank placeholder


def test_map_images_are_legible_strips(clip):
    seconds, comp, _, _, _ = clip
    for o in comp.outcomes:
        img = render.method_overlay(comp, o, 0.6)
        h, w, _ = img.shape
        assert h >= 128 and 1.0 <= w / h <= render.STRIP_MAX_ASPECT, (seconds, img.shape)
        before, after = render.normal_version(comp, o)
        assert before.shape == after.shape == img.shape
        assert (img != before).any()  # the map is drawn over the spectrogram
    # the mask outline survives the resampling: cyan pixels where the map passes its threshold
    assert (render.method_overlay(comp, comp.outcomes[0], 0.0) == render.MASK_RGB.astype(np.uint8)).all(-1).any()


def test_the_compare_page_draws_the_sound_in_one_figure(clip):
    from decodemo.app.compare import CompareHandlers, ComparePage, MethodPanel

    _, comp, _, _, _ = clip

    class Held:
        def result(self, result_id):
            assert result_id == comp.id
            return comp

    panels = {m: MethodPanel(*(f"{m}.{part}" for part in ("column", "head", "overlay", "normal", "threshold")))
              for m in METHOD_ORDER}
    page = ComparePage(summary="summary", player="player", panels=panels, reference_plot="reference",
                       latency_plot="latency", audio_plot="audio")
    h = CompareHandlers(Held(), store=None, page=page, run_models=lambda *a, **k: None)
    out = h.draw_new({"id": comp.id}, 0.6)  # a new result: everything but the plots, which follow
    assert set(out) == set(page.outputs()) - set(page.plots())
    out.update(h.plots({"id": comp.id}))
    assert set(out) == set(page.outputs()) == set(h.draw_selected({"id": comp.id}, 0.6))
    assert out["audio"]["visible"] is True
    assert [t.name for t in out["audio"]["value"].data if t.type == "heatmap"] == ["spectrogram", *METHOD_ORDER]
    for m in METHOD_ORDER:
        assert out[f"{m}.overlay"].shape[0] >= 128


def test_render_time(clip):
    seconds, _, _, _, took = clip
    assert took < 5.0, f"{seconds} s clip drawn in {took:.2f} s"


def test_a_threshold_above_every_frame_stays_in_view(tmp_path):
    comp, _ = _comparison(tmp_path, 0.5)
    o = comp.outcomes[0]
    high = 3.0 * float(o.frame_scores.max())
    comp.outcomes[0] = replace(o, pixel_threshold=high)
    fig = render.audio_figure(comp)
    curve = _traces(fig, "scatter")[o.method]
    lo, hi = fig.layout[curve.yaxis.replace("y", "yaxis", 1)].range
    assert lo <= float(np.min(curve.y)) and high < hi
