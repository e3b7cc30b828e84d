"""Space-ready: on a ZeroGPU Space the work inside ``spaces.GPU`` gets and returns picklable
values only, and a Hugging Face login is the reviewer's identity."""

from __future__ import annotations

import pickle
import sys
import types

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from decodemo.app import compare as compare_module
from decodemo.app.compare import CompareHandlers
from decodemo.app.review_handlers import reviewer_name
from decodemo.data.synthetic import make_texture
from decodemo.service import Service
from decodemo.store import ReviewStore


def _fake_spaces(crossed: list):
    """A ``spaces`` module whose GPU decorator does what ZeroGPU does to values: pickle the
    arguments into the worker and the result back (a lambda or a lock would fail here)."""
    mod = types.ModuleType("spaces")

    def GPU(duration=60):
        def wrap(fn):
            def call(*args, **kwargs):
                sent = pickle.dumps((args, kwargs))
                result = fn(*pickle.loads(sent)[0], **pickle.loads(sent)[1])
                back = pickle.dumps(result)
                crossed.append((len(sent), len(back)))
                return pickle.loads(back)
            return call
        return wrap

    mod.GPU = GPU
    return mod


def test_the_gpu_function_takes_and_returns_picklable_values(tmp_path, monkeypatch):
    crossed: list = []
    monkeypatch.setitem(sys.modules, "spaces", _fake_spaces(crossed))
    monkeypatch.setenv("SPACES_ZERO_GPU", "1")
    monkeypatch.setattr(compare_module, "_results_dir", lambda: tmp_path / "results")
    img, _ = make_texture(np.random.default_rng([5, 1]), size=128, defect="crack")
    Image.fromarray(img).save(tmp_path / "part.png")
    service = Service()
    store = ReviewStore(f"sqlite:///{tmp_path / 'review.db'}", data_dir=tmp_path / "store")
    service.attach_store(store)
    h = CompareHandlers(service, store, page=None)
    assert h.run_models is not service.compare  # wrapped for the GPU worker
    res, files = h.compare(str(tmp_path / "part.png"), None, "texture", progress=lambda *a, **k: None)
    assert len(crossed) == 1 and res["item_id"] is not None and res["summary"]["verdict"] == "anomalous"
    direct = service.compare(tmp_path / "part.png", domain="texture")
    assert [m["score"] for m in res["methods"]] == pytest.approx([o.score for o in direct.outcomes], rel=1e-5)
    store.close()


def test_without_zero_gpu_the_service_runs_in_process(monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    service = Service()
    assert CompareHandlers(service, None, page=None).run_models == service.compare


def test_a_hugging_face_login_is_the_reviewer():
    profile = gr.OAuthProfile({"preferred_username": "ana-hf", "name": "Ana", "profile": "", "picture": ""})
    assert reviewer_name(None, profile) == "ana-hf"
    assert reviewer_name(types.SimpleNamespace(username="ben"), None) == "ben"  # an --auth login
    assert reviewer_name(types.SimpleNamespace(username=None), None) is None  # anonymous
