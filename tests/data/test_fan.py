"""The fan-recording builder on the real data in ../shared (skipped on a fresh clone)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from decodemo.data.fan import build_fan_layout, parse_recording_name, plan_fan_split
from decodemo.data.layout import scan_layout
from decodemo.errors import DatasetError

FAN_SRC = Path(__file__).resolve().parents[2].parent / "shared/data/fan_audio"


def test_plan_split_by_recording_without_data():
    names = [f"ON_2020031{d}T2045{s:02d}.wav" for d in (7, 8) for s in range(4)]
    names += ["ON_20210210T012001.wav", "ON_20210210T012029.wav", "BLADE FAULT_20200318T205628.wav",
              "TAPPING_20200318T205340.wav", "OFF_20200318T204107.wav", "FAN_GUARDS_20201210144646.wav"]
    plan = plan_fan_split(names)
    assert plan["BLADE FAULT_20200318T205628.wav"] == "test/blade_fault"
    assert plan["TAPPING_20200318T205340.wav"] == "test/tapping"
    assert plan["OFF_20200318T204107.wav"] == "extra/off"
    assert plan["FAN_GUARDS_20201210144646.wav"] == "extra/fan_guards"
    test_sessions = {parse_recording_name(n)[2] for n, f in plan.items() if f == "test/good"}
    assert test_sessions == {"20200317", "20200318", "20210210"}
    assert parse_recording_name("FAN_GUARDS_20201210144646.wav") == ("FAN_GUARDS", "20201210144646", "20201210")


def test_bad_sources(tmp_path: Path):
    with pytest.raises(DatasetError, match="<LABEL>_<timestamp>"):
        build_fan_layout(tmp_path / "nope", tmp_path / "out")
    with pytest.raises(DatasetError, match="known labels"):
        plan_fan_split(["HUMMING_20200318T204454.wav"])
    with pytest.raises(DatasetError, match="not named"):
        parse_recording_name("ON.wav")


@pytest.mark.skipif(not FAN_SRC.is_dir(), reason=f"fan recordings not found at {FAN_SRC}")
def test_build_fan_layout(tmp_path: Path):
    import soundfile as sf

    out = build_fan_layout(FAN_SRC, tmp_path / "fan")
    split = json.loads((out / "split.json").read_text())
    where: dict[str, set[str]] = {}
    for e in split["recordings"]:
        where.setdefault(e["recording"], set()).add(e["folder"])
    assert all(len(f) == 1 for f in where.values()), "a recording appears in two splits"
    assert len(where) == 28

    # every clip on disk belongs to exactly one recording, in that recording's folder
    clip_owner = {}
    for e in split["recordings"]:
        for c in e["clips"]:
            assert (out / e["folder"] / c).is_file()
            assert c not in clip_owner
            clip_owner[c] = e["recording"]
    train = {e["recording"] for e in split["recordings"] if e["folder"] == "train/good"}
    test = {e["recording"] for e in split["recordings"] if e["folder"].startswith("test/")}
    assert not train & test
    good_test = [e for e in split["recordings"] if e["folder"] == "test/good"]
    assert {e["session"][:4] for e in good_test} == {"2020", "2021"}

    lay = scan_layout(out, require_test=True)
    assert lay.modality == "audio"
    assert lay.kinds == ["blade_fault", "tapping"]
    assert lay.extra_kinds == ["fan_guards", "off"]
    on_disk = {s.path.name for s in lay.train + lay.test + lay.extra}
    assert on_disk == set(clip_owner)
    for s in lay.train[:3] + lay.test[-3:]:
        info = sf.info(str(s.path))
        assert info.samplerate == 16000 and info.subtype == "PCM_16"
        assert 2.5 <= info.frames / 16000 <= 5.0
    assert " " not in "".join(on_disk)
