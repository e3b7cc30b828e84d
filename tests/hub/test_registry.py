"""The model registry: manifest validation, bundled / cached / downloaded resolution through the
real ``huggingface_hub`` client against a loopback Hub, verification, loading once, LRU."""

from __future__ import annotations

import json
import threading
import time

import pytest
import torch

from decodemo.cli import main
from decodemo.errors import ModelError, UnsafeWeightsError
from decodemo.methods.recon.config import ReconConfig
from decodemo.methods.recon.model import Recon
from decodemo.hub import (
    Entry,
    ModelRegistry,
    ModelUnavailableError,
    RegistryError,
    best_device,
    entry_from_folder,
    gpu_task,
    load_manifest,
    model_card,
    push,
    resolve,
    save_manifest,
)

TINY = dict(image_size=32, block_out_channels=[8, 16, 16], norm_num_groups=4, feature_size=64, feature_blocks=[2],
            category="tex", threshold=1.5, threshold_provenance="0.99 quantile of 4 held-out normal files; no test data used")


def _folder(path, seed=0):
    torch.manual_seed(seed)
    Recon(ReconConfig(**TINY)).save_pretrained(path)
    return path


@pytest.fixture()
def shop(tmp_path):
    """checkpoints/ with two bundled tiny models and a manifest."""
    root = tmp_path / "checkpoints"
    entries = {}
    for i, name in enumerate(("tex/recon", "tex2/recon")):
        folder = _folder(root / name, seed=i)
        entries[name] = entry_from_folder(name, folder, domain=name.split("/")[0], root=root,
                                          figures={"image_auroc": 0.5}, training_data="synthetic", licence="MIT")
    save_manifest(entries, root / "registry.json")
    return root


def test_manifest_round_trip_and_entries_from_folders(shop):
    entries = load_manifest(shop / "registry.json")
    e = entries["tex/recon"]
    assert (e.method, e.modality, e.bundled, e.threshold) == ("recon", "image", "tex/recon", 1.5)
    assert e.input["image_size"] == 32 and len(e.sha256) == 64 and "no test data" in e.threshold_provenance


@pytest.mark.parametrize("field, value, message", [
    ("method", "magic", "'method'"),
    ("threshold", "high", "'threshold'"),
    ("sha256", "abc", "'sha256'"),
    ("hub", {"repo_id": "org/m", "revision": "main"}, "'hub.revision'"),
    ("bundled", "../../etc", "'bundled'"),
    ("colour", "red", "'colour'"),
    ("reference", {"scores": []}, "'reference.scores'"),
    ("reference", {"scores": [1.0, float("nan")]}, "'reference.scores'"),
    ("reference", {"scores": [1.0], "pixel_quantiles": {"q": [0.9, 0.5], "v": [1, 2]}}, "'reference.pixel_quantiles.q'"),
])
def test_a_broken_entry_names_the_entry_and_the_field(shop, field, value, message):
    data = json.loads((shop / "registry.json").read_text())
    data["models"]["tex2/recon"][field] = value
    (shop / "bad.json").write_text(json.dumps(data))
    with pytest.raises(RegistryError, match="'tex2/recon'") as info:
        load_manifest(shop / "bad.json")
    assert message in str(info.value)


def test_bundled_weights_are_verified_and_pickles_refused(shop):
    entries = load_manifest(shop / "registry.json")
    folder, source = resolve(entries["tex/recon"], root=shop)
    assert source == "bundled" and folder == shop / "tex/recon"
    # a tampered weights file is refused
    w = shop / "tex2/recon/model.safetensors"
    w.write_bytes(w.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(UnsafeWeightsError, match="model.safetensors .*does not match"):
        resolve(entries["tex2/recon"], root=shop)
    (shop / "tex/recon/extra.pt").write_bytes(b"\x80\x04")
    with pytest.raises(UnsafeWeightsError, match="pickle"):
        resolve(entries["tex/recon"], root=shop)


def test_two_threads_asking_at_once_load_once(shop, monkeypatch):
    import decodemo.hub.registry as reg

    real = reg.load_on_device

    def slow(folder, device, **kw):  # widen the window in which a second load could start
        time.sleep(0.3)
        return real(folder, device, **kw)

    monkeypatch.setattr(reg, "load_on_device", slow)
    registry = ModelRegistry(shop / "registry.json", root=shop, device="cpu")
    got = [None, None]
    barrier = threading.Barrier(2)

    def ask(i):
        barrier.wait()
        got[i] = registry.get("tex/recon")

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got[0] is got[1] and got[0] is not None
    assert registry.load_counts["tex/recon"] == 1 and registry.sources["tex/recon"] == "bundled"


def test_lru_bound_and_unknown_names(shop):
    registry = ModelRegistry(shop / "registry.json", root=shop, device="cpu", max_resident=1)
    registry.get("tex/recon")
    registry.get("tex2/recon")
    assert registry.resident() == ["tex2/recon"]
    registry.get("tex/recon")
    assert registry.load_counts["tex/recon"] == 2  # it was evicted, so it loaded again
    with pytest.raises(ModelError, match="tex/recon"):
        registry.get("nope/recon")


def test_device_override(monkeypatch):
    monkeypatch.setenv("DECODEMO_DEVICE", "cpu")
    assert best_device() == "cpu"
    monkeypatch.setenv("DECODEMO_DEVICE", "tpu")
    with pytest.raises(Exception, match="DECODEMO_DEVICE"):
        best_device()
    monkeypatch.delenv("DECODEMO_DEVICE")
    assert best_device() == ("cuda" if torch.cuda.is_available() else "cpu")


def test_gpu_task_wraps_only_on_zerogpu(monkeypatch):
    def f():
        return 1

    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert gpu_task(f) is f
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    import sys
    import types

    calls = []
    fake = types.ModuleType("spaces")
    fake.GPU = lambda duration=60: (lambda fn: calls.append(duration) or (lambda: fn() + 1))
    monkeypatch.setitem(sys.modules, "spaces", fake)
    wrapped = gpu_task(f, duration=30)
    assert wrapped is not f and wrapped() == 2 and calls == [30]


def test_model_card_and_push_through_the_hub_api(shop):
    entries = load_manifest(shop / "registry.json")
    card = model_card(entries["tex/recon"])
    assert card.startswith("---\nlibrary_name: decodemo") and "Yi Chen" in card and "Choices the paper" not in card
    assert "image_auroc" in card and "no test data used" in card

    class FakeApi:
        def __init__(self):
            self.uploaded = {}

        def create_repo(self, repo_id, private=False, exist_ok=False):
            self.repo = repo_id

        def upload_folder(self, repo_id, folder_path, commit_message):
            from pathlib import Path

            self.uploaded = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
            return type("CommitInfo", (), {"oid": "a" * 40})()

    api = FakeApi()
    sha = push("tex/recon", "org/tex-recon", manifest=shop / "registry.json", root=shop, api=api)
    assert sha == "a" * 40 and set(api.uploaded) == {"config.json", "model.safetensors", "README.md"}
    hub = load_manifest(shop / "registry.json")["tex/recon"].hub
    assert (hub.repo_id, hub.revision) == ("org/tex-recon", "a" * 40)


def test_models_command_lists_where_each_entry_loads_from(shop, capsys, monkeypatch):
    data = json.loads((shop / "registry.json").read_text())
    data["models"]["hub/recon"] = dict(data["models"]["tex/recon"], bundled=None,
                                       hub={"repo_id": "org/nothing", "revision": "b" * 40})
    (shop / "registry.json").write_text(json.dumps(data))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    assert main(["models", "--manifest", str(shop / "registry.json")]) == 0
    out = capsys.readouterr().out
    assert "tex/recon" in out and "bundled (tex/recon)" in out and "unavailable offline" in out
    entry = load_manifest(shop / "registry.json")["hub/recon"]
    with pytest.raises(ModelUnavailableError, match="HF_HUB_OFFLINE"):
        resolve(entry, root=shop)


def test_the_shipped_manifest_is_valid_and_bundled():
    from decodemo.hub import CHECKPOINTS, MANIFEST, where

    entries = load_manifest(MANIFEST)
    assert entries
    for name, e in entries.items():
        assert where(e).startswith("bundled"), name
        folder, _ = resolve(e)  # SHA-256 matches the committed weights
        assert json.loads((folder / "config.json").read_text()).get("storage_dtype") == "float16", name  # UNet or bank
        ref = e.reference
        assert len(ref.get("scores", [])) >= 4 and "normal" in ref["source"], name
        assert "no test data" in e.threshold_provenance, name
    # every method for each bundled domain, the synthetic ones included
    methods = {}
    for e in entries.values():
        methods.setdefault(e.domain, set()).add(e.method)
    for domain in ("bottle", "elpv", "fan", "texture", "hum"):
        assert methods.get(domain) - {"baseline"} == {"invad", "decodiff", "recon"}, domain
    # the nearest-neighbour reference ships for bottle, and is never one of the compared methods
    assert entries["bottle/baseline"].method == "baseline" and "not a diffusion method" in entries["bottle/baseline"].paper
    size = sum(p.stat().st_size for p in CHECKPOINTS.rglob("*") if p.is_file())
    assert size < 250e6, f"checkpoints/ holds {size / 1e6:.1f} MB"


def test_convert_halves_the_file_and_keeps_the_scores(shop, tmp_path, capsys):
    from decodemo.methods import load_model

    src = shop / "tex/recon"
    assert main(["convert", "--model", str(src), "--out", str(tmp_path / "half")]) == 0
    assert "float16" in capsys.readouterr().out
    before, after = (src / "model.safetensors").stat().st_size, (tmp_path / "half/model.safetensors").stat().st_size
    assert after < 0.6 * before
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    a = load_model(src).detect(x)
    b = load_model(tmp_path / "half").detect(x)
    assert torch.allclose(a.scores, b.scores, rtol=2e-2, atol=2e-2)


def test_reference_command_stores_normal_scores_and_a_threshold(shop, tmp_path, capsys):
    from decodemo.data.synthetic import write_synthetic_layout

    data = write_synthetic_layout(tmp_path / "normal", n_train=6, n_test_good=0, n_test_per_kind=0, size=32, seed=5)
    manifest = shop / "registry.json"
    assert main(["reference", "tex/recon", "--data", str(data), "--all-normal", "--threshold-quantile", "0.5",
                 "--manifest", str(manifest)]) == 0
    e = load_manifest(manifest)["tex/recon"]
    assert len(e.reference["scores"]) == 6 and "all 6 files" in e.reference["source"]
    assert e.threshold == pytest.approx(float(sorted(e.reference["scores"])[2] / 2 + sorted(e.reference["scores"])[3] / 2))
    assert "0.5 quantile" in e.threshold_provenance
    q = e.reference["pixel_quantiles"]
    assert q["v"] == sorted(q["v"]) and len(q["q"]) == len(q["v"])
    # held-out split by default: the training's seeded 10 % (at least 4 files)
    assert main(["reference", "tex2/recon", "--data", str(data), "--manifest", str(manifest)]) == 0
    assert load_manifest(manifest)["tex2/recon"].reference["n"] == 4


def test_download_a_pinned_revision_through_the_real_hub_client(tmp_path, monkeypatch):
    """A loopback Hub (tests/hub/fake_hub.py) answers the real ``huggingface_hub`` client: the
    registry downloads the pinned revision, caches it, verifies it, refuses a pickle-only repo,
    and then works with HF_HUB_OFFLINE and the server gone."""
    import huggingface_hub.constants as hc
    from fake_hub import FakeHub

    folder = _folder(tmp_path / "src")
    files = {f"m/{p.name}": p.read_bytes() for p in folder.iterdir()}
    files["m/pytorch_model.bin"] = b"\x80\x04 never fetched"
    good_sha, old_sha, pickle_sha = "1" * 40, "2" * 40, "3" * 40
    repos = {"org/tiny": {old_sha: {"m/config.json": files["m/config.json"]}, good_sha: files},
             "org/pickled": {pickle_sha: {"config.json": files["m/config.json"], "pytorch_model.bin": b"\x80\x04"}}}
    base = entry_from_folder("tiny/recon", folder, domain="tiny", root=tmp_path / "nowhere")
    entry = Entry(**{**base.__dict__, "bundled": None})
    from decodemo.hub import HubSource

    entry.hub = HubSource("org/tiny", good_sha, "m")
    cache = tmp_path / "hf_cache"
    root = tmp_path / "checkpoints"
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)
    with FakeHub(repos) as hub:
        path, source = resolve(entry, root=root, cache_dir=cache, endpoint=hub.url)
        assert source == "hub" and (path / "model.safetensors").read_bytes() == files["m/model.safetensors"]
        assert good_sha in str(path)  # the pinned revision, not the branch head
        assert not any("pytorch_model.bin" in r for r in hub.requests)
        n = len(hub.requests)
        again, source = resolve(entry, root=root, cache_dir=cache, endpoint=hub.url)
        assert source == "cache" and again == path and len(hub.requests) == n  # no network once cached

        pickled = Entry(**{**entry.__dict__, "hub": HubSource("org/pickled", pickle_sha, None)})
        with pytest.raises(ModelUnavailableError, match="model.safetensors"):
            resolve(pickled, root=root, cache_dir=cache, endpoint=hub.url)
        wrong = Entry(**{**entry.__dict__, "sha256": "0" * 64})
        with pytest.raises(UnsafeWeightsError):
            resolve(wrong, root=root, cache_dir=cache, endpoint=hub.url)
        missing = Entry(**{**entry.__dict__, "hub": HubSource("org/tiny", "4" * 40, "m")})
        with pytest.raises(ModelUnavailableError, match="could not download"):
            resolve(missing, root=root, cache_dir=cache, endpoint=hub.url)
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    path2, source = resolve(entry, root=root, cache_dir=cache)
    assert source == "cache" and path2 == path
    registry = ModelRegistry({"tiny/recon": entry}, root=root, device="cpu", cache_dir=cache)
    model = registry.get("tiny/recon")
    assert model.detect(torch.rand(1, 3, 32, 32)).scores.shape == (1,)
    with pytest.raises(ModelUnavailableError, match="HF_HUB_OFFLINE"):
        resolve(missing, root=root, cache_dir=cache)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_path_runs_every_method_with_a_half_precision_unet(tmp_path):
    from decodemo.methods.decodiff.config import DeCoDiffConfig, VAEConfig
    from decodemo.methods.decodiff.model import DeCoDiff, LatentVAE
    from decodemo.methods.invad import InvAD, InvADConfig

    folders = {
        "t/recon": _folder(tmp_path / "recon"),
        "t/invad": InvAD(InvADConfig(image_size=64, grid=8, block_out_channels=[32, 64], norm_num_groups=8,
                                     threshold=1.0, threshold_provenance="test")).save_pretrained(tmp_path / "invad"),
    }
    vae = LatentVAE(VAEConfig(image_size=64, block_out_channels=[16, 32, 32], norm_num_groups=8))
    dd = DeCoDiff(DeCoDiffConfig(categories=["t"], block_out_channels=[32, 64], attention_levels=[1],
                                 norm_num_groups=8, threshold={"t": 1.0}, threshold_provenance="test"), vae)
    folders["t/decodiff"] = dd.save_pretrained(tmp_path / "decodiff")
    entries = {n: entry_from_folder(n, f, domain="t", class_id="t" if "decodiff" in n else None, root=tmp_path)
               for n, f in folders.items()}
    registry = ModelRegistry(entries, root=tmp_path, device="cuda")
    for name in entries:
        model = registry.get(name)
        assert next(model.unet.parameters()).dtype == torch.float16 and next(model.unet.parameters()).is_cuda
        kwargs = {"category": "t"} if "decodiff" in name else {}
        size = model.config.image_size
        res = model.detect(torch.rand(2, 3, size, size, device="cuda"), **kwargs)
        assert torch.isfinite(res.scores).all() and res.maps.shape == (2, size, size), name


def test_cli_takes_a_registry_name(tmp_path, capsys):
    from decodemo.data.synthetic import make_texture
    from PIL import Image

    img, _ = make_texture(0, size=64)
    path = tmp_path / "tex.png"
    Image.fromarray(img).save(path)
    assert main(["score", "--model", "bottle/decodiff", str(path)]) == 0  # class id comes from the entry
    assert str(path) in capsys.readouterr().out
    assert main(["score", "--model", "no/such", str(path)]) == 2
    assert "registry name" in capsys.readouterr().err


def test_model_card_lists_the_validation_candidates():
    from decodemo.hub import selection_section

    assert "before settings were selected" in selection_section({})
    sel = {"mode": "auto", "rule": "the rule", "chosen": 1, "rerun": "selection run on trained weights",
           "validation_set": {"normal_inputs": 21, "synthetic_anomalies": 120, "source": "held-out normals"},
           "candidates": [{"settings": {"S": 3}, "validation": {"image_auroc": 0.9, "pixel_auroc": 0.8, "aupro": 0.5},
                           "score": 0.85, "paper": True},
                          {"settings": {"S": 1}, "validation": {"image_auroc": 0.95, "pixel_auroc": 0.9, "aupro": 0.6},
                           "score": 0.925, "paper": False}]}
    text = selection_section({"selection": sel})
    assert "| S = 3 (paper) | 0.900 | 0.800 | 0.500 | 0.850 |" in text
    assert "| **S = 1** | 0.950 | 0.900 | 0.600 | 0.925 |" in text
    assert "decodemo select" in text and "21 normal inputs and 120 synthetic anomalies" in text


def test_card_command_prints_the_shipped_models_card(tmp_path, capsys):
    from decodemo.cli import main

    assert main(["card", "bottle/invad"]) == 0
    card = capsys.readouterr().out
    assert card.startswith("---\nlibrary_name: decodemo") and "An `invad` anomaly detector for **bottle**" in card
    assert "## How the settings were chosen" in card and "| n_test | 83 |" in card
    assert main(["card", "bottle/recon", "--out", str(tmp_path / "card.md")]) == 0
    assert (tmp_path / "card.md").read_text().startswith("---")
    assert main(["card", "nowhere/invad"]) == 2
    assert "Unknown model" in capsys.readouterr().err
