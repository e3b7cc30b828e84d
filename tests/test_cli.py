"""The command line: train -> evaluate -> score on synthetic images and audio, and its errors."""

from __future__ import annotations

import json

import pytest

from decodemo.cli import main
from decodemo.data.synthetic import write_synthetic_layout


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_img")
    data = write_synthetic_layout(root / "data", modality="image", n_train=10, n_test_good=3, n_test_per_kind=2,
                                  size=64, seed=2)
    out = root / "model"
    rc = main(["train", "--method", "invad", "--data", str(data), "--out", str(out), "--steps", "4",
               "--batch-size", "4", "--image-size", "64", "--checkpoint-every", "2", "--device", "cpu"])
    return rc, data, out


def test_train_writes_a_model_folder(image_run, capsys):
    rc, _, out = image_run
    assert rc == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["method"] == "invad" and cfg["training"]["steps"] == 4 and cfg["threshold"] is not None
    assert (out / "model.safetensors").is_file()
    # --select auto (the default) trains one UNet per feature standardisation and records every candidate
    for norm in ("channel", "position"):
        assert json.loads((out / f"checkpoint-{norm}" / "trainer_state.json").read_text())["step"] == 4
    sel = cfg["selection"]
    assert sel["mode"] == "auto" and len(sel["candidates"]) == 16  # 2 norms x 2 grids x 4 S
    assert {k: cfg[k] for k in sel["chosen_settings"]} == sel["chosen_settings"]


def test_train_select_none_keeps_the_paper_settings_and_given_ones(tmp_path):
    data = write_synthetic_layout(tmp_path / "d", modality="image", n_train=8, n_test_good=1, n_test_per_kind=1,
                                  size=64, seed=3)
    out = tmp_path / "m"
    assert main(["train", "--method", "invad", "--data", str(data), "--out", str(out), "--steps", "2",
                 "--batch-size", "4", "--image-size", "64", "--select", "none", "--device", "cpu"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["feature_norm"], cfg["inversion_steps"]) == ("channel", 3)
    assert main(["train", "--method", "invad", "--data", str(data), "--out", str(tmp_path / "g"), "--steps", "2",
                 "--batch-size", "4", "--image-size", "64", "--feature-norm", "position", "--device", "cpu"]) == 0
    cfg = json.loads((tmp_path / "g" / "config.json").read_text())
    assert cfg["feature_norm"] == "position"  # given on the command line: kept, only S selected
    assert {c["settings"]["feature_norm"] for c in cfg["selection"]["candidates"]} == {"position"}


def test_train_resume_when_finished_keeps_the_loss(image_run, capsys):
    _, data, out = image_run
    rc = main(["train", "--method", "invad", "--data", str(data), "--out", str(out), "--steps", "4",
               "--batch-size", "4", "--image-size", "64", "--resume", "--device", "cpu"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "Trained 4 steps" in text and "final loss None" not in text


def test_evaluate_prints_and_writes_every_metric(image_run, tmp_path, capsys):
    _, data, out = image_run
    report_file = tmp_path / "r" / "report.json"
    rc = main(["evaluate", "--model", str(out), "--data", str(data), "--json", str(report_file)])
    assert rc == 0
    text = capsys.readouterr().out
    for col in ("image_auroc", "pixel_auroc", "aupro", "scratch", "overall"):
        assert col in text
    report = json.loads(report_file.read_text())
    both = report["overall"]["nll+diff"]
    assert 0.0 <= both["image_auroc"] <= 1.0 and 0.0 <= both["aupro"] <= 1.0
    assert set(report["per_kind"]) == {"scratch", "spot", "crack"}
    assert report["timing"]["nfe_per_input"] == json.loads((out / "config.json").read_text())["inversion_steps"]
    # the no-diffusion ablation (S = 0) ran on the same inputs, and its gain is reported
    assert report["ablation"]["nfe_per_input"] == 0 and "image_auroc" in report["diffusion_gain"]
    assert "Diffusion gain" in text


def test_evaluate_other_step_count(image_run, capsys):
    _, data, out = image_run
    assert main(["evaluate", "--model", str(out), "--data", str(data), "--inversion-steps", "5"]) == 0
    assert "NFE per input 5" in capsys.readouterr().out


def test_score_reports_each_file_and_refuses_bad_ones(image_run, tmp_path, capsys):
    _, data, out = image_run
    good = sorted((data / "test" / "good").glob("*.png"))[0]
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text_file = tmp_path / "notes.png"
    text_file.write_text("not an image at all\n")
    rows_file = tmp_path / "rows.json"
    rc = main(["score", "--model", str(out), str(good), str(empty), str(text_file), "--json", str(rows_file)])
    assert rc == 1  # some files were refused; the good one was still scored
    captured = capsys.readouterr()
    assert str(good) in captured.out and ("normal" in captured.out or "anomalous" in captured.out)
    assert "empty" in captured.err.lower() and "notes.png" in captured.err
    rows = json.loads(rows_file.read_text())
    assert [("score" in r, "error" in r) for r in rows] == [(True, False), (False, True), (False, True)]


def test_errors_exit_2_with_a_message(tmp_path, capsys):
    rc = main(["evaluate", "--model", str(tmp_path / "nope"), "--data", str(tmp_path)])
    assert rc == 2
    assert "error:" in capsys.readouterr().err
    (tmp_path / "empty_data").mkdir()
    rc = main(["train", "--method", "invad", "--data", str(tmp_path / "empty_data"), "--out", str(tmp_path / "m")])
    assert rc == 2
    assert "train" in capsys.readouterr().err


def test_audio_train_evaluate_score(tmp_path, capsys):
    data = write_synthetic_layout(tmp_path / "hum", modality="audio", n_train=4, n_test_good=2, n_test_per_kind=1,
                                  seconds=3.0, seed=4)
    out = tmp_path / "model"
    assert main(["train", "--method", "invad", "--data", str(data), "--out", str(out), "--steps", "3",
                 "--batch-size", "4", "--image-size", "64", "--device", "cpu"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["modality"] == "audio" and cfg["mel"]["sample_rate"] == 16000
    report_file = tmp_path / "report.json"
    assert main(["evaluate", "--model", str(out), "--data", str(data), "--json", str(report_file)]) == 0
    report = json.loads(report_file.read_text())
    assert {"auroc", "pauc"} <= set(report["overall"]["nll+diff"])
    clip = sorted((data / "test" / "good").glob("*.wav"))[0]
    image = tmp_path / "picture.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(image)
    renamed = tmp_path / "clip_saved_as.png"  # a clip named as an image: scored as what it is, as compare does
    renamed.write_bytes(clip.read_bytes())
    capsys.readouterr()
    assert main(["score", "--model", str(out), str(clip), str(renamed), str(image)]) == 1
    captured = capsys.readouterr()
    assert str(clip) in captured.out and str(renamed) in captured.out and "audio" in captured.err
    assert f"{renamed}\terror" not in captured.err and f"{image.name}: this model scores audio" in captured.err


@pytest.mark.parametrize("modality", ["image", "audio"])
def test_recon_train_evaluate_score(tmp_path, capsys, modality):
    data = write_synthetic_layout(tmp_path / "d", modality=modality, n_train=6, n_test_good=2, n_test_per_kind=1,
                                  size=64, seconds=2.0, seed=5)
    out = tmp_path / "recon"
    assert main(["train", "--method", "recon", "--data", str(data), "--out", str(out), "--steps", "3",
                 "--batch-size", "4", "--image-size", "64", "--t0", "200", "--draws", "1", "--reverse-steps", "4",
                 "--device", "cpu"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["method"] == "recon" and cfg["t0"] == 200 and cfg["modality"] == modality
    assert cfg["in_channels"] == (1 if modality == "audio" else 3)
    capsys.readouterr()
    assert main(["evaluate", "--model", str(out), "--data", str(data)]) == 0
    text = capsys.readouterr().out
    assert "error" in text and "semantic" in text and "combined" in text
    if modality == "image":
        assert "NFE per input 4;" in text and cfg["reverse_steps"] == 4
    else:  # an audio model's reverse steps are cut to the real-time budget; a clip costs that per window
        from decodemo.training.recon import AUDIO_NFE_BUDGET

        assert cfg["reverse_steps"] == AUDIO_NFE_BUDGET < 4 and cfg["feature_size"] == 64
    sample = sorted((data / "test" / "good").glob("*.png" if modality == "image" else "*.wav"))[0]
    assert main(["score", "--model", str(out), str(sample)]) == 0
    assert str(sample) in capsys.readouterr().out


def test_baseline_train_evaluate_score(tmp_path, capsys):
    data = write_synthetic_layout(tmp_path / "d", modality="image", n_train=8, n_test_good=2, n_test_per_kind=1,
                                  size=64, seed=6)
    out = tmp_path / "baseline"
    assert main(["train", "--method", "baseline", "--data", str(data), "--out", str(out), "--image-size", "64",
                 "--device", "cpu"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["method"] == "baseline" and cfg["threshold"] is not None
    capsys.readouterr()
    assert main(["evaluate", "--model", str(out), "--data", str(data)]) == 0
    text = capsys.readouterr().out
    assert "nn" in text and "NFE per input 0;" in text and "Diffusion gain" not in text  # no ablation: no diffusion
    sample = sorted((data / "test" / "good").glob("*.png"))[0]
    assert main(["score", "--model", str(out), str(sample)]) == 0


def test_train_vae_at_downsampling_4_with_a_perceptual_loss(tmp_path, capsys):
    data = tmp_path / "tex"
    write_synthetic_layout(data, modality="image", n_train=8, n_test_good=1, n_test_per_kind=1, size=64, seed=2)
    out = tmp_path / "vae"
    assert main(["train", "--method", "vae", "--data", str(data), "--out", str(out), "--steps", "2",
                 "--batch-size", "4", "--image-size", "64", "--vae-downsampling", "4", "--perceptual", "0.5",
                 "--device", "cpu"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["block_out_channels"] == [32, 64, 64] and cfg["perceptual_weight"] == 0.5
    assert "latents 4 x 16 x 16" in capsys.readouterr().out
    assert main(["train", "--method", "vae", "--data", str(data), "--out", str(tmp_path / "g"), "--gpu-config",
                 "--vae-downsampling", "4"]) == 2
