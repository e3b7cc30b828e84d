"""``python -m decodemo fit``: a whole model set from a folder layout, end to end, into a user
registry that the service then serves beside the bundled domains."""

from __future__ import annotations

import json

import pytest

from decodemo.cli import main
from decodemo.data.synthetic import write_synthetic_layout


@pytest.fixture()
def tiny(tiny_budget, monkeypatch, tmp_path):
    monkeypatch.setenv("DECODEMO_DATA_DIR", str(tmp_path / "home"))
    data = write_synthetic_layout(tmp_path / "parts", modality="image", n_train=12, n_test_good=3, n_test_per_kind=1,
                                  size=64, seed=5)
    return data, tmp_path


def test_fit_trains_references_evaluates_and_registers(tiny, capsys):
    from decodemo import settings
    from decodemo.hub import ModelRegistry, load_manifest
    from decodemo.service import Service

    data, tmp = tiny
    assert main(["fit", "--data", str(data), "--name", "parts", "--methods", "invad,baseline"]) == 0
    out = capsys.readouterr().out
    assert "[fit] invad done" in out and "min left" in out and "[fit] parts: done in" in out
    registry = settings.user_registry()
    assert registry.is_relative_to(tmp / "home")
    entries = load_manifest(registry)
    assert sorted(entries) == ["parts/baseline", "parts/invad"]
    inv = entries["parts/invad"]
    assert inv.domain == "parts" and inv.bundled == "parts/invad"
    assert inv.figures["n_test"] == 6 and 0.0 <= inv.figures["image_auroc"] <= 1.0
    assert len(inv.reference["scores"]) >= 1 and "held-out" in inv.reference["source"]
    assert (registry.parent / "parts" / "domain" / "config.json").is_file()
    summary = json.loads((registry.parent / "parts_fit.json").read_text())
    assert summary["models"] == ["parts/invad", "parts/baseline"] and summary["seconds"] > 0

    # the app's service lists the new domain beside the bundled ones, after a refresh too
    reg = ModelRegistry()
    service = Service(reg)
    assert "parts" not in service.domains()
    reg.add_manifest(registry)
    assert "parts" in service.domains("image") and "bottle" in service.domains("image")
    comp = service.compare(sorted((data / "test" / "good").iterdir())[0], domain="parts")
    assert [o.method for o in comp.outcomes] == ["invad"] and comp.reference is not None
    assert comp.domain_check is not None and comp.domain_check["domain"] == "parts"
    assert service.refresh() == []  # nothing new since

    # the real app lists it at start and serves it through the API, like a bundled set
    import socket

    from gradio_client import Client, handle_file

    from decodemo.app.blocks import build_app, launch_kwargs

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo = build_app()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                        **launch_kwargs())
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        listed = client.predict("auto", api_name="/refresh_model_sets")
        assert "parts" in json.dumps(listed)
        image = sorted((data / "test" / "good").iterdir())[0]
        result, _ = client.predict(handle_file(str(image)), None, "parts", api_name="/compare")
        assert result["domain"] == "parts" and [m["method"] for m in result["methods"]] == ["invad"]
        assert result["domain_check"]["domain"] == "parts" and "in_domain" in result
    finally:
        demo.close()


def test_fit_refuses_a_bundled_name_and_a_bad_name(tiny, capsys):
    data, _ = tiny
    assert main(["fit", "--data", str(data), "--name", "bottle"]) == 2
    assert "bundled domain" in capsys.readouterr().err
    assert main(["fit", "--data", str(data), "--name", "Not OK"]) == 2
    assert "domain name" in capsys.readouterr().err


def test_fit_refuses_a_registry_inside_the_repository(tiny, capsys):
    from pathlib import Path

    data, _ = tiny
    inside = Path(__file__).resolve().parents[2] / "models" / "registry.json"
    assert main(["fit", "--data", str(data), "--name", "parts", "--registry", str(inside)]) == 2
    assert "inside" in capsys.readouterr().err and not inside.parent.exists()
