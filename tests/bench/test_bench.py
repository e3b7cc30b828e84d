"""The benchmark command: trains what is missing, evaluates every model with its ablation and the
baseline on the same inputs, and writes the Markdown table, the JSON and a self-contained HTML page."""

from __future__ import annotations

import json

import pytest

from decodemo import bench
from decodemo.data.synthetic import write_synthetic_layout


@pytest.fixture(scope="module")
def tiny_sets(tmp_path_factory, monkeypatch_module):
    root = tmp_path_factory.mktemp("bench")
    data = write_synthetic_layout(root / "tex", modality="image", n_train=10, n_test_good=3, n_test_per_kind=1,
                                  size=64, seed=8)
    # a preset small enough for a test: the real ones are "quick" and "full"
    monkeypatch_module.setitem(bench.PRESETS, "test", {
        "invad": {"steps": 3, "batch_size": 4}, "recon": {"steps": 2, "batch_size": 4},
        "vae": {"steps": 2, "batch_size": 4}, "decodiff": {"steps": 2, "batch_size": 4},
        "baseline": {"steps": 0, "batch_size": 1}})
    return root, data


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_bench_trains_evaluates_and_reports(tiny_sets, monkeypatch):
    root, data = tiny_sets
    from decodemo.methods.baseline.config import BaselineConfig
    from decodemo.methods.invad.config import InvADConfig

    # tiny networks for the test; the command itself uses each method's default config
    small = {"invad": lambda **kw: InvADConfig(**{**kw, "image_size": 64, "grid": 8, "block_out_channels": [16, 32],
                                                  "norm_num_groups": 8}),
             "baseline": lambda **kw: BaselineConfig(**{**kw, "image_size": 64, "grid": 8})}
    monkeypatch.setattr("decodemo.methods.invad.config.InvADConfig", small["invad"])
    monkeypatch.setattr("decodemo.methods.baseline.config.BaselineConfig", small["baseline"])
    out = root / "report"
    rc = bench.main(["--data", f"tex={data}", "--runs", str(root / "runs"), "--train", "--preset", "test",
                     "--methods", "invad,baseline", "--repeats", "1", "--out", str(out)])
    assert rc == 0
    for method in ("invad", "baseline"):
        assert (root / "runs" / "tex" / method / "config.json").is_file()
    rows = json.loads((out / "bench.json").read_text())["rows"]
    by = {r["method"]: r for r in rows}
    assert set(by) == {"invad", "baseline"} and all(r["n_test"] == 6 for r in rows)
    inv = by["invad"]
    assert inv["selection"] and inv["ablation"]["auroc"] is not None
    assert inv["gain"]["auroc"] == pytest.approx(inv["auroc"] - inv["ablation"]["auroc"])
    assert "ablation" not in by["baseline"] and by["baseline"]["nfe"] == 0
    # each model's full report, in the evaluate --json format that register --figures reads
    rep = json.loads((out / "reports" / "tex_invad.json").read_text())
    assert rep["overall"][rep["model"]["score"]]["image_auroc"] == pytest.approx(inv["auroc"])
    md = (out / "bench.md").read_text()
    assert "| tex | invad |" in md and "(reference)" in md
    html = (out / "bench.html").read_text()
    assert html.startswith("<!doctype html>") and "plotly" in html.lower() and "Diffusion gain" in html
    assert '<script src="http' not in html and len(html) > 1_000_000  # self-contained: plotly's JavaScript inlined
    assert by["invad"]["source"] == "trained (test)"
    # selection rerun on the trained weights (`decodemo select`) is labelled as such; a second run
    # finds the trained models and trains nothing
    from decodemo.cli import main as cli

    assert cli(["select", "--model", str(root / "runs" / "tex" / "invad"), "--data", str(data)]) == 0
    # the model a cell replaces is timed again in this run, beside it, with the earlier run's figures
    rc = bench.main(["--data", f"tex={data}", "--runs", str(root / "runs"), "--methods", "invad,baseline",
                     "--repeats", "1", "--out", str(root / "again"),
                     "--before", f"tex/invad={root / 'runs' / 'tex' / 'invad'}", "--before-figures", str(out / "bench.json")])
    assert rc == 0
    again = {r["method"]: r for r in json.loads((root / "again" / "bench.json").read_text())["rows"]}
    assert again["invad"]["source"] == "trained (test), selected after training"
    b = again["invad"]["before"]
    assert b["auroc"] == pytest.approx(inv["auroc"]) and b["latency_b1_s"] > 0 and b["throughput_b16"] > 0
    assert "before" not in again["baseline"]
    md = (root / "again" / "bench.md").read_text()
    header, _, inv_line = (md.splitlines()[i] for i in (2, 3, 4))
    assert "throughput, batch 16" in header and "latency after / before" in header
    ratio = again["invad"]["latency_b1_s"] / b["latency_b1_s"]
    assert f"{ratio:.2f}x" in md and header.count("|") == inv_line.count("|")


def test_bench_refuses_unknown_methods_and_train_without_runs(tiny_sets):
    _, data = tiny_sets
    with pytest.raises(SystemExit, match="Unknown method"):
        bench.main(["--data", f"tex={data}", "--methods", "nope"])
    with pytest.raises(SystemExit, match="--runs"):
        bench.main(["--data", f"tex={data}", "--train"])


def test_the_efficiency_bench_counts_flops_and_times_them_against_a_same_run_matmul(capsys):
    from decodemo.bench.efficiency import main

    assert main(["--domain", "texture", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("texture/")]
    assert [line.split(":")[0] for line in lines] == ["texture/invad", "texture/recon", "texture/decodiff"]
    for line in lines:
        gflop = float(line.split("input(s), ")[1].split(" GFLOP")[0])
        share = float(line.split("GFLOP/s, ")[1].split("%")[0])
        assert gflop > 0.5 and 0 < share < 500
    assert "floor at the matmul rate" in out


def test_the_shapes_bench_scores_centre_crops_of_normals_against_a_threshold_from_them(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from decodemo.bench.shapes import main
    from decodemo.data.synthetic import make_texture

    for i in range(6):
        img, _ = make_texture(np.random.default_rng([5, i]), size=256)
        Image.fromarray(img).save(tmp_path / f"{i}.png")
    assert main(["--model", "texture/invad", "--normals", str(tmp_path), "--crops", "2"]) == 0
    out = capsys.readouterr().out
    assert "0.99 quantile of 6 whole normal images" in out
    for fit in ("pad", "squash"):
        line = next(x for x in out.splitlines() if x.strip().startswith(fit + ":"))
        assert "4 crops at" in line and line.rstrip().endswith("of 4 flagged")
