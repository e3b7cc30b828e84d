"""The out-of-domain check: a reference fitted on one synthetic domain keeps that domain's new
normals in domain and flags inputs of another; the shipped references flag the other kind of
input; the service picks the closest set on Auto and returns the flag through the API's JSON."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from decodemo.data.synthetic import write_synthetic_layout
from decodemo.inference import load_input
from decodemo.ood import DomainReference, describe_paths, features_of_paths, fit_reference
from decodemo.ood.reference import ANOMALY_QUANTILE, POOLINGS, ledoit_wolf

CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"


def _files(root: Path, split: str, kind: str = "good") -> list[Path]:
    return sorted((root / split / kind).iterdir())


@pytest.fixture(scope="module")
def two_domains(tmp_path_factory):
    root = tmp_path_factory.mktemp("ood")
    tex = write_synthetic_layout(root / "tex", modality="image", n_train=24, n_test_good=6, n_test_per_kind=1,
                                 size=96, seed=3)
    # another domain: smooth colour gradients, nothing like the textures
    other = root / "gradients"
    other.mkdir()
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(8):
        a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        t = np.linspace(0, 1, 96)[None, :, None]
        img = (a * (1 - t) + b * t).repeat(96, axis=0).astype(np.uint8)
        Image.fromarray(img).save(other / f"{i}.png")
    return tex, sorted(other.iterdir())


def _rows(feats: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    return [{p: feats[p][i] for p in feats} for i in range(len(next(iter(feats.values()))))]


@pytest.fixture(scope="module")
def tex_reference(two_domains):
    tex, _ = two_domains
    normals, anomalies, sources = describe_paths(_files(tex, "train"), "image")
    return fit_reference(normals, anomalies, sources, domain="tex", modality="image"), (normals, anomalies, sources)


def test_threshold_and_pooling_come_from_normals_and_synthetic_anomalies(tex_reference):
    ref, (normals, anomalies, sources) = tex_reference
    assert len(ref.normal_distances) == 24 and ref.pooling in POOLINGS
    assert len(sources) == 24 * 6 and set(sources) == set(range(24))  # every kind of every normal (<= 60 normals)
    sel = ref.extra["selection"]
    # the chosen pooling is the tighter envelope; its threshold keeps 95% of the synthetic anomalies in domain
    assert ref.pooling == min(POOLINGS, key=lambda p: sel[p]["threshold_over_median_normal"])
    assert sel[ref.pooling]["synthetic_anomalies_in_domain"] >= ANOMALY_QUANTILE
    assert ref.threshold >= max(ref.normal_distances) and ref.threshold == pytest.approx(sel[ref.pooling]["threshold"],
                                                                                         abs=1e-4)


def test_new_normals_are_in_domain_and_another_domain_is_not(two_domains, tex_reference):
    tex, gradients = two_domains
    ref, _ = tex_reference
    assert all(ref.check(f).in_domain for f in _rows(features_of_paths(_files(tex, "test"), "image")))
    far = [ref.check(f) for f in _rows(features_of_paths(gradients, "image"))]
    assert not any(c.in_domain for c in far) and min(c.ratio for c in far) > 1.0


def test_reference_round_trips_through_its_folder(two_domains, tex_reference, tmp_path):
    _, gradients = two_domains
    ref, _ = tex_reference
    loaded = DomainReference.load(ref.save(tmp_path / "tex" / "domain"))
    assert sorted(p.name for p in (tmp_path / "tex" / "domain").iterdir()) == ["config.json", "model.safetensors"]
    probe = _rows(features_of_paths(gradients[:1], "image"))[0]
    assert loaded.check(probe).distance == pytest.approx(ref.check(probe).distance, rel=1e-4)
    assert loaded.threshold == ref.threshold and loaded.n_inputs == 24 and loaded.pooling == ref.pooling
    assert loaded.extra["selection"] == ref.extra["selection"]


def test_ledoit_wolf_matches_scikit_learn():
    from sklearn.covariance import ledoit_wolf as sk_ledoit_wolf

    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 30)) @ rng.normal(size=(30, 30))  # correlated features, few samples
    z = x - x.mean(0)
    cov, shrink = ledoit_wolf(z)
    sk_cov, sk_shrink = sk_ledoit_wolf(z, assume_centered=True)
    assert shrink == pytest.approx(sk_shrink, rel=1e-6) and np.allclose(cov, sk_cov, rtol=1e-6, atol=1e-9)


def test_a_reference_needs_enough_normals():
    from decodemo.errors import ModelError

    with pytest.raises(ModelError, match="at least 5"):
        fit_reference({p: np.zeros((3, 472)) for p in POOLINGS}, domain="x", modality="image")


def test_shipped_references_flag_the_other_synthetic_domain(tmp_path):
    """The bundled texture reference keeps fresh textures in domain; bottle's flags them."""
    tex = write_synthetic_layout(tmp_path / "tex", modality="image", n_train=1, n_test_good=4, n_test_per_kind=1,
                                 size=256, seed=1)
    texture = DomainReference.load(CHECKPOINTS / "texture" / "domain")
    bottle = DomainReference.load(CHECKPOINTS / "bottle" / "domain")
    for f in _rows(features_of_paths(_files(tex, "test"), "image")):
        assert texture.check(f).in_domain
        assert not bottle.check(f).in_domain


def test_service_picks_the_closest_set_and_reports_the_flag(tmp_path):
    from decodemo.service import Service

    tex = write_synthetic_layout(tmp_path / "tex", modality="image", n_train=1, n_test_good=1, n_test_per_kind=1,
                                 size=256, seed=2)
    service = Service()
    path = _files(tex, "test")[0]
    checks = service.domain_checks(load_input(path), service.domains("image"))
    assert checks[0].domain == "texture" and checks[0].in_domain
    assert {c.domain for c in checks} >= {"bottle", "screw", "ball_screw", "fabric", "elpv", "texture"}
    comp = service.compare(path)  # Auto
    assert comp.domain == "texture" and comp.in_domain is True
    res = comp.to_json()
    assert res["in_domain"] is True and res["domain_check"]["chosen"] == "auto"
    assert res["domain_check"]["candidates"][0]["domain"] == "texture"
    given = service.compare(path, domain="bottle")
    assert given.in_domain is False and given.to_json()["domain_check"]["chosen"] == "given"


def test_the_page_says_out_of_domain_instead_of_a_verdict(tmp_path):
    from decodemo.app.compare import _summary_md
    from decodemo.service import Service

    tex = write_synthetic_layout(tmp_path / "tex", modality="image", n_train=1, n_test_good=1, n_test_per_kind=1,
                                 size=256, seed=4)
    service = Service()
    path = _files(tex, "test")[0]
    far = _summary_md(service.compare(path, domain="bottle"))
    assert "OUT OF DOMAIN for" in far and "results are not meaningful" in far and "## Verdict" not in far
    near = _summary_md(service.compare(path))
    assert "## Verdict" in near and "OUT OF DOMAIN" not in near and "chosen automatically" in near


def test_a_long_clip_is_described_by_a_fixed_number_of_evenly_spread_windows():
    import torch

    from decodemo.inference.inputs import spectrogram_windows
    from decodemo.io.spectrogram import MelConfig
    from decodemo.ood.reference import IMAGE_SIZE, MAX_CLIP_VIEWS, clip_windows

    mel = MelConfig(window_hop_seconds=1.0)
    rng = np.random.default_rng(3)
    long = rng.random((mel.n_mels, 60 * 63)).astype(np.float32)  # about 60 s: 59 windows at a 1 s hop
    every = spectrogram_windows(long, mel, IMAGE_SIZE)[0]
    some = clip_windows(long, mel)
    assert every.shape[0] > MAX_CLIP_VIEWS and some.shape == (MAX_CLIP_VIEWS, *every.shape[1:])
    assert torch.equal(some[0], every[0]) and torch.equal(some[-1], every[-1])
    short = rng.random((mel.n_mels, 5 * 63)).astype(np.float32)  # 5 s: every window, as before
    assert torch.equal(clip_windows(short, mel), spectrogram_windows(short, mel, IMAGE_SIZE)[0])
