"""The compare service, the normal reference and the drawing of a comparison, on the shipped
synthetic-texture and machine-hum models (no data needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from decodemo.cli import main
from decodemo.data.synthetic import SAMPLE_RATE, make_hum, make_texture
from decodemo.errors import DecodemoError, InputError
from decodemo.evaluation.reference import percentile_of, pixel_threshold
from decodemo.service import METHOD_ORDER, Service


@pytest.fixture(scope="module")
def service():
    return Service()


@pytest.fixture(scope="module")
def texture_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("svc")
    files = {}
    for name, defect in (("normal", None), ("crack", "crack")):
        img, mask = make_texture(np.random.default_rng([77, 1 if defect else 0]), size=256, defect=defect)
        Image.fromarray(img).save(root / f"{name}.png")
        files[name] = (root / f"{name}.png", mask)
        if defect:
            # a non-square crop, so "the input's size" is checked in both directions (the models see
            # it squeezed to a square, which changes the stripes' period: only sizes are checked)
            Image.fromarray(img[20:220, :]).save(root / "crop.png")
            files["crop"] = (root / "crop.png", mask[20:220, :])
    return files


@pytest.fixture(scope="module")
def image_comparisons(service, texture_files):
    return {k: service.compare(p, domain="texture") for k, (p, _) in texture_files.items()}


def test_image_comparison_has_three_methods_at_the_inputs_size(image_comparisons):
    comp = image_comparisons["crop"]
    assert [o.method for o in comp.outcomes] == list(METHOD_ORDER)
    assert comp.size == (200, 256)
    for o in comp.outcomes:
        assert np.isfinite(o.score) and o.map.shape == (200, 256) and o.latency_ms > 0 and o.nfe > 0
        assert o.decision == ("anomalous" if o.score > o.threshold else "normal")
        assert 0.0 <= o.percentile <= 100.0 and len(o.reference_scores) >= 20
        if o.method == "invad":
            assert o.reconstruction is None  # reconstruction-free
        else:
            assert o.reconstruction.shape == (200, 256, 3) and o.reconstruction.dtype == np.uint8


def test_the_shipped_texture_models_tell_a_crack_from_normal(image_comparisons, texture_files):
    crack, normal = image_comparisons["crack"], image_comparisons["normal"]
    assert crack.summary()["verdict"] == "anomalous" and normal.summary()["verdict"] == "normal"
    _, mask = texture_files["crack"]
    for a, b in zip(crack.outcomes, normal.outcomes):
        assert a.score > b.score, a.method
        assert a.percentile > b.percentile, a.method
        # the map is higher on the drawn crack than off it
        assert a.map[mask].mean() > a.map[~mask].mean(), a.method


def test_thresholds_change_decisions_and_masks_without_running_models(image_comparisons):
    comp = image_comparisons["crack"]
    o = comp.outcome("decodiff")
    low, high = o.with_threshold(o.score - 1e-3), o.with_threshold(o.score + 1e-3)
    assert (low.decision, high.decision) == ("anomalous", "normal")
    assert low.mask.sum() >= high.mask.sum()
    lowest = comp.with_thresholds({m: -1e9 for m in METHOD_ORDER})
    assert lowest.summary() == {**lowest.summary(), "verdict": "anomalous", "votes_anomalous": 3, "unanimous": True}
    assert comp.outcome("decodiff").threshold == o.threshold  # the held result is unchanged


def test_json_result_names_map_files_of_the_inputs_size(image_comparisons, tmp_path):
    res = image_comparisons["crop"].to_json(tmp_path)
    json.dumps(res)  # serialisable
    assert res["input_shape"] == [200, 256] and res["summary"]["n_methods"] == 3
    for m in res["methods"]:
        arr = np.load(m["map_file"], allow_pickle=False)
        assert arr.shape == (200, 256) and arr.dtype == np.float32
        if m["method"] != "invad":
            assert Image.open(m["normal_file"]).size == (256, 200)


def test_audio_comparison_maps_the_spectrogram(service, tmp_path):
    import soundfile as sf

    y, events = make_hum(np.random.default_rng(31), seconds=5.0, sample_rate=SAMPLE_RATE, anomaly="click")
    sf.write(tmp_path / "click.wav", y, SAMPLE_RATE)
    comp = service.compare(tmp_path / "click.wav", domain="hum")
    n_mels, frames = comp.size
    assert frames == 1 + 5 * SAMPLE_RATE // 256 and len(comp.frame_times) == frames and len(comp.band_hz) == n_mels
    for o in comp.outcomes:
        assert o.map.shape == comp.size and o.frame_scores.shape == (frames,)
        # the per-frame score is higher near the clicks than elsewhere in the clip
        near = np.zeros(frames, bool)
        for ev in events:
            near |= np.abs(comp.frame_times - 0.5 * (ev["start_s"] + ev["end_s"])) < 0.15
        assert o.frame_scores[near].mean() > o.frame_scores[~near].mean(), o.method
    assert comp.outcome("recon").reconstruction.shape == comp.size


def test_service_refuses_with_clear_messages(service, tmp_path, texture_files):
    with pytest.raises(DecodemoError, match="take audio input"):
        service.compare(texture_files["normal"][0], domain="hum")
    with pytest.raises(DecodemoError, match="Unknown domain 'moon'"):
        service.compare(texture_files["normal"][0], domain="moon")
    (tmp_path / "cut.png").write_bytes(texture_files["normal"][0].read_bytes()[:300])
    with pytest.raises(InputError, match="could not be decoded"):
        service.compare(tmp_path / "cut.png", domain="texture")


def test_drawing_a_comparison(image_comparisons):
    from decodemo.app import render

    comp = image_comparisons["crop"]
    o = comp.outcome("decodiff")
    clear, strong = render.method_overlay(comp, o, 0.0), render.method_overlay(comp, o, 1.0)
    assert clear.shape == strong.shape == (200, 256, 3)
    outline = render._contour(o.mask)
    assert np.array_equal(clear[~outline], comp.input[~outline])  # opacity 0 leaves the input (mask outline aside)
    assert np.abs(strong.astype(int) - comp.input).sum() > 0
    assert render.normal_version(comp, comp.outcome("invad")) is None
    fig = render.reference_figure(comp)
    assert sum(t.type == "box" for t in fig.data) == 3
    assert [round(b, 3) for b in render.latency_figure(comp).data[0].y] == [round(x.latency_ms, 3) for x in comp.outcomes]


def test_percentiles_and_pixel_thresholds():
    ref = [1.0, 2.0, 3.0, 4.0]
    assert percentile_of(0.5, ref) == 0 and percentile_of(10, ref) == 100 and percentile_of(2.0, ref) == 37.5
    reference = {"scores": ref, "pixel_quantiles": {"q": [0.5, 0.9, 0.99], "v": [0.1, 0.5, 1.0]}}
    values = [pixel_threshold(reference, t) for t in (0.0, 2.5, 4.0, 8.0)]
    assert values == sorted(values) and values[0] == pytest.approx(0.1) and values[-1] == pytest.approx(2.0)


def test_compare_command(texture_files, tmp_path, capsys):
    assert main(["compare", str(texture_files["crack"][0]), "--domain", "texture", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "DeCo-Diff" in out and "verdict: anomalous" in out
    res = json.loads((tmp_path / "result.json").read_text())
    assert [m["method"] for m in res["methods"]] == list(METHOD_ORDER)


def test_the_bottle_baseline_is_a_reference_row_not_a_vote(service, texture_files):
    from decodemo.app.compare import _summary_md

    assert service.reference_model("bottle") == "bottle/baseline" and service.reference_model("texture") is None
    comp = service.compare(texture_files["crack"][0], domain="bottle")
    assert [o.method for o in comp.outcomes] == list(METHOD_ORDER)  # the three methods only
    assert comp.summary()["n_methods"] == 3
    ref = comp.reference
    assert ref.method == "baseline" and ref.nfe == 0 and ref.map.shape == comp.size and np.isfinite(ref.score)
    assert ref.decision == ("anomalous" if ref.score > ref.threshold else "normal")
    res = comp.to_json()
    assert res["reference"]["counts_in_verdict"] is False and res["summary"]["n_methods"] == 3
    assert "reference only, not counted" in _summary_md(comp)
    assert service.compare(texture_files["crack"][0], domain="texture").reference is None


def test_decisions_carry_their_calibration_and_the_vote_its_reason(image_comparisons, service):
    from decodemo.app.render import method_overlay

    comp = image_comparisons["crack"]
    s = comp.summary()
    assert s["rule"].startswith("majority vote") and f"{s['votes_anomalous']} of 3 methods" in s["reason"]
    for o in comp.outcomes:
        c = o.calibration
        entry = service.registry.entry(o.model)
        assert c["n"] == len(entry.reference["scores"]) and c["target"] == entry.calibration["target"]
        assert c["fpr_bound"] == pytest.approx((c["n"] + 1 - c["rank"]) / (c["n"] + 1), abs=1e-6)
        # the shipped threshold is the conformal one: its rank among the normal scores is the conformal rank
        from decodemo.metrics.calibration import conformal_rank

        assert c["rank"] == conformal_rank(c["n"], c["target"])
        moved = o.with_threshold(-1e9)  # an applied threshold is described by the rank it reaches
        assert moved.calibration["rank"] == 0 and moved.calibration["fpr_bound"] == 1.0
    assert s["fpr_bound"] == pytest.approx(sum(o.calibration["fpr_bound"] for o in comp.outcomes) / 2, abs=1e-5)
    # the defect mask is drawn only where the decision is anomalous
    o = comp.outcome("decodiff")
    above, below = o.with_threshold(o.score - 1e-3), o.with_threshold(o.score + 1e-3)
    assert above.shown_mask is not None and above.shown_mask.any() and below.shown_mask is None
    cyan = np.array([0, 255, 255])
    drawn = [int((method_overlay(comp, x) == cyan).all(axis=-1).sum()) for x in (above, below)]
    assert drawn[0] > 0 and drawn[1] == 0
