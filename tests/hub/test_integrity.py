"""Integrity of model folders and Hub references: the manifest pins every file of a folder (an
edited config.json, an extra or a missing file is refused, naming the file); nothing is followed
through a symbolic link inside a registry root; Hub subfolders stay inside their repository and
every Hub reference (the DeCo-Diff VAE included) is pinned to a commit; one broken entry leaves the
others served; in-domain references are verified against the manifest's ``domains`` pins."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading

import numpy as np
import pytest
import torch

from decodemo.errors import IntegrityError, ModelError, UnpinnedReferenceError, UnsafeWeightsError
from decodemo.hub import (
    CHECKPOINTS,
    DOMAIN_FOLDER,
    MANIFEST,
    Entry,
    HubSource,
    ModelRegistry,
    ModelUnavailableError,
    RegistryError,
    entry_from_folder,
    folder_files,
    load_domains,
    load_manifest,
    pin_domain,
    resolve,
    save_manifest,
)
from decodemo.methods.recon.config import ReconConfig
from decodemo.methods.recon.model import Recon

TINY = dict(image_size=32, block_out_channels=[8, 16, 16], norm_num_groups=4, feature_size=64, feature_blocks=[2],
            category="tex", threshold=1.5, threshold_provenance="0.99 quantile of 4 held-out normal files; no test data used")
NAMES = ("tex/recon", "tex2/recon", "tex3/recon")


@pytest.fixture()
def shop(tmp_path):
    """A registry root with three bundled tiny models, their manifest pinning every file."""
    root = tmp_path / "checkpoints"
    entries = {}
    for i, name in enumerate(NAMES):
        torch.manual_seed(i)
        folder = Recon(ReconConfig(**TINY)).save_pretrained(root / name)
        entries[name] = entry_from_folder(name, folder, domain=name.split("/")[0], root=root)
    save_manifest(entries, root / "registry.json")
    return root


def _entries(shop):
    return load_manifest(shop / "registry.json")


def _raw(shop):
    return json.loads((shop / "registry.json").read_text())


# ---------------------------------------------------------------------- 1. every file is pinned
def test_the_manifest_pins_every_file_of_a_folder(shop):
    e = _entries(shop)["tex/recon"]
    assert set(e.files) == {"config.json", "model.safetensors"}
    assert e.files == folder_files(shop / "tex/recon") and e.files["model.safetensors"] == e.sha256
    assert _raw(shop)["models"]["tex/recon"]["files"] == e.files  # written to the file, not only in memory


def test_an_edited_config_json_is_refused_naming_the_file(shop):
    entries = _entries(shop)
    cfg = shop / "tex/recon/config.json"
    data = json.loads(cfg.read_text())
    data["threshold"] = 0.01  # valid JSON, a different decision: exactly what must not pass silently
    cfg.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    with pytest.raises(IntegrityError, match="config.json .*does not match the manifest"):
        resolve(entries["tex/recon"], root=shop)
    registry = ModelRegistry(shop / "registry.json", device="cpu")
    with pytest.raises(UnsafeWeightsError, match="config.json"):  # IntegrityError is an UnsafeWeightsError
        registry.get("tex/recon")
    assert registry.get("tex2/recon") is not None  # the others are unaffected


def test_an_extra_file_and_a_missing_one_are_refused(shop):
    entries = _entries(shop)
    (shop / "tex/recon/notes.txt").write_text("not pinned")
    with pytest.raises(IntegrityError, match="'notes.txt'.*does not pin"):
        resolve(entries["tex/recon"], root=shop)
    # a folder registered with a third file must keep it
    (shop / "tex2/recon/evaluation.json").write_text("{}")
    e = entry_from_folder("tex2/recon", shop / "tex2/recon", domain="tex2", root=shop)
    assert "evaluation.json" in e.files
    resolve(e, root=shop)
    (shop / "tex2/recon/evaluation.json").unlink()
    with pytest.raises(IntegrityError, match="lacks 'evaluation.json'"):
        resolve(e, root=shop)


def test_a_manifest_of_an_earlier_version_still_loads_and_verifies_the_weights(shop):
    """Entries without ``files`` (user registries written before it) load; the weights are
    verified, the other files cannot be (nothing pins them) - but links are still refused."""
    data = _raw(shop)
    for raw in data["models"].values():
        raw.pop("files")
    (shop / "registry.json").write_text(json.dumps(data))
    e = _entries(shop)["tex/recon"]
    assert e.files == {} and e.pinned() == {"model.safetensors": e.sha256}
    (shop / "tex/recon/notes.txt").write_text("not pinned, not refused: nothing pins it")
    assert resolve(e, root=shop)[1] == "bundled"
    w = shop / "tex/recon/model.safetensors"
    w.write_bytes(w.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(UnsafeWeightsError, match="model.safetensors .*does not match"):
        resolve(e, root=shop)


@pytest.mark.parametrize("fld, value, message", [
    ("files", {"config.json": "0" * 64, "../model.safetensors": "0" * 64}, "'files'"),
    ("files", {"config.json": "0" * 64, "/etc/passwd": "0" * 64}, "'files'"),
    ("files", {"config.json": "xyz", "model.safetensors": "SHA"}, "'files.config.json'"),
    ("files", {"model.safetensors": "SHA"}, "must pin config.json"),
    ("files", {"config.json": "0" * 64, "model.safetensors": "1" * 64}, "differs from 'sha256'"),
    ("hub", {"repo_id": "org/m", "revision": "a" * 40, "subfolder": "../other"}, "'hub.subfolder'"),
    ("hub", {"repo_id": "org/m", "revision": "a" * 40, "subfolder": "/abs"}, "'hub.subfolder'"),
    ("hub", {"repo_id": "org/m", "revision": "a" * 40, "subfolder": "a/../../b"}, "'hub.subfolder'"),
    ("hub", {"repo_id": "not a repo id!", "revision": "a" * 40}, "'hub.repo_id'"),
    ("hub", {"repo_id": "org//m", "revision": "a" * 40}, "'hub.repo_id'"),
    ("bundled", "/abs/folder", "'bundled'"),
])
def test_names_and_paths_that_leave_their_folder_are_refused_at_load(shop, fld, value, message):
    data = _raw(shop)
    raw = data["models"]["tex2/recon"]
    if fld == "files" and "SHA" in value.values():
        value = {k: raw["sha256"] if v == "SHA" else v for k, v in value.items()}
    raw[fld] = value
    (shop / "bad.json").write_text(json.dumps(data))
    with pytest.raises(RegistryError, match="'tex2/recon'") as info:
        load_manifest(shop / "bad.json")
    assert message in str(info.value)


def test_a_valid_subfolder_is_kept_without_slashes(shop):
    data = _raw(shop)
    data["models"]["tex2/recon"]["hub"] = {"repo_id": "org/m", "revision": "a" * 40, "subfolder": "models/m/"}
    (shop / "ok.json").write_text(json.dumps(data))
    assert load_manifest(shop / "ok.json")["tex2/recon"].hub == HubSource("org/m", "a" * 40, "models/m")


# ---------------------------------------------------------------------- 2. no links followed
def test_a_bundled_folder_that_is_a_link_is_refused(shop, tmp_path):
    entries = _entries(shop)
    outside = tmp_path / "elsewhere"
    shutil.copytree(shop / "tex/recon", outside)  # the very same bytes: only the link is wrong
    shutil.rmtree(shop / "tex/recon")
    os.symlink(outside, shop / "tex/recon")
    with pytest.raises(IntegrityError, match="symbolic link"):
        resolve(entries["tex/recon"], root=shop)
    # a link to a folder inside the root is refused as well: no links are followed at all
    os.unlink(shop / "tex/recon")
    os.symlink(shop / "tex2/recon", shop / "tex/recon")
    with pytest.raises(IntegrityError, match="symbolic link"):
        resolve(entries["tex/recon"], root=shop)


def test_a_parent_folder_that_is_a_link_is_refused(shop, tmp_path):
    entries = _entries(shop)
    shutil.move(shop / "tex", tmp_path / "tex_real")
    os.symlink(tmp_path / "tex_real", shop / "tex")
    with pytest.raises(IntegrityError, match="symbolic link"):
        resolve(entries["tex/recon"], root=shop)


def test_a_file_that_is_a_link_is_refused_even_with_the_right_bytes(shop, tmp_path):
    entries = _entries(shop)
    w = shop / "tex/recon/model.safetensors"
    copy = tmp_path / "weights.safetensors"
    shutil.copy2(w, copy)
    w.unlink()
    os.symlink(copy, w)
    with pytest.raises(IntegrityError, match="model.safetensors is a symbolic link"):
        resolve(entries["tex/recon"], root=shop)
    with pytest.raises(IntegrityError, match="symbolic link"):  # and it cannot be registered either
        entry_from_folder("tex/recon", shop / "tex/recon", domain="tex", root=shop)


# ---------------------------------------------------------------------- 2b. the Hub download is verified too
def test_a_hub_download_fetches_and_verifies_every_pinned_file(shop, tmp_path, monkeypatch):
    import huggingface_hub.constants as hc
    from fake_hub import FakeHub

    folder = shop / "tex/recon"
    (folder / "evaluation.json").write_text('{"n_test": 3}')
    base = entry_from_folder("tex/recon", folder, domain="tex", root=shop)
    files = {f"m/{p.name}": p.read_bytes() for p in folder.iterdir()}
    edited = dict(files, **{"m/config.json": files["m/config.json"].replace(b"1.5", b"0.01")})
    assert edited["m/config.json"] != files["m/config.json"]
    good, bad = "1" * 40, "2" * 40
    entry = Entry(**{**base.__dict__, "bundled": None, "hub": HubSource("org/tiny", good, "m")})
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)
    with FakeHub({"org/tiny": {bad: edited, good: files}}) as hub:
        path, source = resolve(entry, root=tmp_path / "none", cache_dir=tmp_path / "c", endpoint=hub.url)
        assert source == "hub" and (path / "evaluation.json").is_file()  # the third pinned file came too
        tampered = Entry(**{**entry.__dict__, "hub": HubSource("org/tiny", bad, "m")})
        with pytest.raises(IntegrityError, match="config.json"):
            resolve(tampered, root=tmp_path / "none", cache_dir=tmp_path / "c", endpoint=hub.url)


# ---------------------------------------------------------------------- 3. the VAE is pinned
@pytest.mark.parametrize("revision", [None, "main", "v1.0", "a" * 39, "A" * 40])
def test_a_pretrained_vae_on_the_hub_must_be_pinned_to_a_commit(revision, monkeypatch):
    from diffusers import AutoencoderKL

    from decodemo.methods.decodiff.config import DeCoDiffConfig, VAEConfig

    def never(*a, **k):  # the refusal comes at config validation, before anything is fetched
        raise AssertionError("the Hub was asked for an unpinned VAE")

    monkeypatch.setattr(AutoencoderKL, "from_pretrained", never)
    with pytest.raises(UnpinnedReferenceError, match="40-hex commit"):
        VAEConfig(pretrained="stabilityai/sd-vae-ft-mse", revision=revision)
    vae = {**VAEConfig().to_dict(), "pretrained": "stabilityai/sd-vae-ft-mse", "revision": revision}
    with pytest.raises(UnpinnedReferenceError, match="config.vae"):
        DeCoDiffConfig.from_dict({"method": "decodiff", "vae": vae})


def test_a_pinned_vae_a_local_vae_folder_and_a_bad_subfolder(tmp_path):
    from decodemo.methods.decodiff.config import VAEConfig

    assert VAEConfig(pretrained="stabilityai/sd-vae-ft-mse", revision="a" * 40).revision == "a" * 40
    assert VAEConfig(pretrained=str(tmp_path)).revision is None  # a local diffusers folder: nothing to pin
    with pytest.raises(ModelError, match="subfolder"):
        VAEConfig(pretrained="org/vae", revision="a" * 40, subfolder="../other")
    with pytest.raises(ModelError, match="Hub repo id"):
        VAEConfig(pretrained="not a/repo/id", revision="a" * 40)


def test_a_decodiff_folder_with_an_unpinned_vae_is_refused_on_load(tmp_path):
    from decodemo.methods import load_model

    folder = tmp_path / "dd"
    folder.mkdir()
    cfg = {"method": "decodiff", "categories": ["t"],
           "vae": {"method": "vae", "pretrained": "stabilityai/sd-vae-ft-mse", "revision": "main"}}
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(UnpinnedReferenceError, match="'main'"):
        load_model(folder)


# ---------------------------------------------------------------------- 4. degrade, don't die
def _break_two(shop):
    data = _raw(shop)
    data["models"]["tex2/recon"]["hub"] = {"repo_id": "bad repo id", "revision": "a" * 40}
    del data["models"]["tex3/recon"]["threshold"]
    (shop / "registry.json").write_text(json.dumps(data))


def test_a_manifest_with_broken_entries_loads_the_rest_when_asked(shop):
    _break_two(shop)
    with pytest.raises(RegistryError, match="tex2/recon"):  # strict by default (commands that rewrite it)
        load_manifest(shop / "registry.json")
    broken: dict[str, str] = {}
    entries = load_manifest(shop / "registry.json", broken=broken)
    assert list(entries) == ["tex/recon"] and set(broken) == {"tex2/recon", "tex3/recon"}
    assert "'hub.repo_id'" in broken["tex2/recon"] and "'threshold'" in broken["tex3/recon"]
    assert all("\n" not in why for why in broken.values())
    (shop / "broken.json").write_text("{not json")
    with pytest.raises(RegistryError, match="not valid JSON"):  # not a manifest at all: still raises
        load_manifest(shop / "broken.json", broken={})


def test_the_registry_serves_the_rest_and_says_why_the_others_are_unavailable(shop):
    _break_two(shop)
    registry = ModelRegistry(shop / "registry.json", device="cpu")
    assert registry.names() == ["tex/recon"] and set(registry.unavailable) == {"tex2/recon", "tex3/recon"}
    assert registry.get("tex/recon") is not None
    with pytest.raises(ModelUnavailableError, match="hub.repo_id"):
        registry.get("tex2/recon")


def test_mark_unavailable_moves_an_entry_out_safely(shop):
    registry = ModelRegistry(shop / "registry.json", device="cpu")
    registry.get("tex/recon")
    walking = iter(registry.entries.items())  # another thread listing the models meanwhile
    next(walking)
    registry.mark_unavailable("tex/recon", "weights refused at warm-up:\nconfig.json does not match")
    assert len(list(walking)) == 2  # the listing finishes: entries was replaced, not changed under it
    assert "tex/recon" not in registry.entries and registry.resident() == []
    assert registry.unavailable["tex/recon"] == "weights refused at warm-up: config.json does not match"
    with pytest.raises(ModelUnavailableError, match="refused at warm-up"):
        registry.get("tex/recon")
    registry.mark_unavailable("tex/recon", "a second request failed too")  # no error; the first reason stays
    assert registry.unavailable["tex/recon"].startswith("weights refused")
    with pytest.raises(ModelError, match="Unknown model"):
        registry.mark_unavailable("no/such", "x")
    # many threads at once: each entry moved exactly once, none lost
    names = ["tex2/recon", "tex3/recon"]
    threads = [threading.Thread(target=registry.mark_unavailable, args=(n, "refused")) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert registry.entries == {} and set(registry.unavailable) == set(NAMES)


def test_a_user_registry_entry_marked_unavailable_stays_out_until_it_changes(shop, tmp_path):
    user = tmp_path / "user"
    torch.manual_seed(5)
    folder = Recon(ReconConfig(**TINY)).save_pretrained(user / "mine/recon")
    save_manifest({"mine/recon": entry_from_folder("mine/recon", folder, domain="mine", root=user)},
                  user / "registry.json")
    registry = ModelRegistry(shop / "registry.json", device="cpu")
    assert registry.add_manifest(user / "registry.json") == ["mine/recon"]
    registry.mark_unavailable("mine/recon", "refused")
    assert registry.refresh() == [] and "mine/recon" not in registry.entries  # unchanged: stays out
    entries = load_manifest(user / "registry.json")
    entries["mine/recon"].threshold = 2.0
    save_manifest(entries, user / "registry.json")
    assert registry.refresh() == ["mine/recon"] and "mine/recon" not in registry.unavailable
    # a user registry cannot take the name of a broken bundled entry
    _break_two(shop)
    registry = ModelRegistry(shop / "registry.json", device="cpu")
    theirs = entry_from_folder("tex2/recon", folder, domain="tex2", root=user)
    save_manifest({"tex2/recon": theirs}, user / "other.json")
    assert registry.add_manifest(user / "other.json") == [] and "tex2/recon" in registry.unavailable


def test_the_models_command_lists_a_broken_entry(shop, capsys):
    from decodemo.cli import main

    _break_two(shop)
    assert main(["models", "--manifest", str(shop / "registry.json")]) == 0
    out = capsys.readouterr().out
    assert "bundled (tex/recon)" in out and re.search(r"tex2/recon +broken: .*'hub.repo_id'", out)
    assert re.search(r"tex3/recon +broken: .*'threshold'", out)


# ---------------------------------------------------------------------- in-domain references
def _reference(root, domain="tex"):
    from decodemo.ood import fit_reference

    x = np.random.default_rng(0).normal(size=(12, 6))
    ref = fit_reference({"mean": x, "median": x + 0.1}, domain=domain, modality="image")
    return ref.save(root / domain / DOMAIN_FOLDER)


def test_an_in_domain_reference_is_verified_against_the_manifest(shop):
    from decodemo.ood import DomainReference

    folder = _reference(shop)
    DomainReference.load(folder)  # not pinned yet (a registry of an earlier version): loads
    pins = pin_domain("tex", shop / "registry.json")
    assert load_domains(shop / "registry.json") == {"tex": pins} and set(pins) == {"config.json", "model.safetensors"}
    assert list(_entries(shop)) == list(NAMES)  # pinning a domain keeps the entries
    assert DomainReference.load(folder).domain == "tex"
    # saving the entries (reference, calibrate-thresholds, register) keeps the pins
    save_manifest(_entries(shop), shop / "registry.json")
    assert load_domains(shop / "registry.json") == {"tex": pins}
    cfg = folder / "config.json"
    cfg.write_text(cfg.read_text().replace('"threshold": ', '"threshold": 1000.0, "was": '))
    with pytest.raises(IntegrityError, match="config.json does not match"):
        DomainReference.load(folder)
    pin_domain("tex", shop / "registry.json")
    (folder / "extra.bin").write_bytes(b"\x80\x04")
    with pytest.raises(IntegrityError, match="'extra.bin'"):
        DomainReference.load(folder)


def test_an_in_domain_reference_behind_a_link_is_refused(shop, tmp_path):
    from decodemo.ood import DomainReference

    real = _reference(tmp_path / "outside")
    (shop / "tex").mkdir(exist_ok=True)
    os.symlink(real, shop / "tex" / DOMAIN_FOLDER)
    with pytest.raises(IntegrityError, match="symbolic link"):
        DomainReference.load(shop / "tex" / DOMAIN_FOLDER)  # even without pins


# ---------------------------------------------------------------------- the shipped manifest
def test_the_shipped_manifest_pins_every_file_of_every_folder():
    from decodemo.ood.reference import MANIFEST_NAME, REFERENCE_FOLDER, DomainReference

    assert DOMAIN_FOLDER == REFERENCE_FOLDER and MANIFEST_NAME == MANIFEST.name  # the two layers agree
    for name, e in load_manifest(MANIFEST).items():
        assert e.files == folder_files(CHECKPOINTS / e.bundled), name
    domains = load_domains(MANIFEST)
    shipped = sorted(p.parent.name for p in CHECKPOINTS.glob(f"*/{DOMAIN_FOLDER}"))
    assert sorted(domains) == shipped and shipped
    for d in shipped:
        assert domains[d] == folder_files(CHECKPOINTS / d / DOMAIN_FOLDER), d
        DomainReference.load(CHECKPOINTS / d / DOMAIN_FOLDER)


# ---------------------------------------------------------------------- commands that rewrite the manifest
def test_register_pins_every_file_and_keeps_the_reference_only_for_the_same_files(shop, capsys):
    from decodemo.cli import main

    path = shop / "registry.json"
    entries = _entries(shop)
    entries["tex/recon"].reference = {"scores": [0.1, 0.2, 0.3, 0.4], "source": "normal inputs"}
    entries["tex/recon"].hub = HubSource("org/tex", "a" * 40, None)  # register outside checkpoints/ needs one
    save_manifest(entries, path)
    folder = str(shop / "tex/recon")
    assert main(["register", "tex/recon", folder, "--domain", "tex", "--manifest", str(path)]) == 0
    assert "2 files pinned" in capsys.readouterr().out
    again = _entries(shop)["tex/recon"]
    assert again.files == folder_files(folder) and again.reference["scores"] == [0.1, 0.2, 0.3, 0.4]
    cfg = shop / "tex/recon/config.json"
    cfg.write_text(cfg.read_text().replace('"clip_reduce": "max"', '"clip_reduce": "mean"'))
    assert main(["register", "tex/recon", folder, "--domain", "tex", "--manifest", str(path)]) == 0
    changed = _entries(shop)["tex/recon"]
    assert changed.files["config.json"] != again.files["config.json"] and changed.reference == {}


def test_calibrate_thresholds_keeps_the_files_and_the_domain_pins(shop):
    from decodemo.cli import main

    path = shop / "registry.json"
    _reference(shop)
    pins = pin_domain("tex", path)
    entries = _entries(shop)
    entries["tex/recon"].reference = {"scores": [float(v) for v in range(1, 41)], "source": "normal inputs"}
    save_manifest(entries, path)
    assert main(["calibrate-thresholds", "tex/recon", "--target", "0.05", "--manifest", str(path)]) == 0
    after = _entries(shop)
    assert after["tex/recon"].threshold != 1.5 and after["tex/recon"].files == entries["tex/recon"].files
    assert load_domains(path) == {"tex": pins}
