"""The fan-state recordings (SensiML demo set) as an MVTec-style audio folder.

Source: ``<src>/data/<LABEL>_<timestamp>.wav``, 28 raw 16 kHz mono recordings of 13-32 s
(default ``<src>`` is ``../shared/data/fan_audio`` next to the repository). The pre-cut
``<src>/dataset/`` clips overlap these recordings and are not used.

Split by source recording, never by clip, so no recording feeds two splits:

* ``ON`` (normal): recordings sorted by timestamp; every third one starting with the
  second (rank 1, 4, 7, ...) goes to ``test/good``, the rest to ``train/good``. If a
  recording session (day) with two or more ON recordings would get none in test, its
  middle recording is moved to test, so both sessions (2020-03-18 and 2021-02-10) are
  evaluated.
* ``BLADE FAULT`` -> ``test/blade_fault``; ``TAPPING`` -> ``test/tapping``.
* ``FAN_GUARDS`` -> ``extra/fan_guards``; ``OFF`` -> ``extra/off`` (other states,
  reported separately, not anomalies).

Clips: each recording is cut into consecutive non-overlapping clips of ``clip_seconds``
(default 5 s), written as 16-bit WAV at the source rate, named
``<recording-stem>_<k>.wav`` with spaces replaced by underscores (k from 0). A final
remainder is kept as a shorter last clip when it is at least half a clip long
(``min_last_fraction``), else dropped: a 31.4 s recording gives 6 clips (1.4 s dropped),
a 13.2 s one gives 3 (the last 3.2 s long). Samples are copied bit-exactly (no resampling,
no requantisation).

``split.json`` records which recording went where and its clips. Command line::

    python -m decodemo.data.fan --src ../shared/data/fan_audio --out DIR
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from decodemo.data.layout import refuse_inside_repo, repo_root
from decodemo.data.writing import remove_stale_files, write_atomically, write_json_atomically
from decodemo.errors import DatasetError

__all__ = ["DEFAULT_SRC", "LABEL_FOLDERS", "build_fan_layout", "parse_recording_name", "plan_fan_split", "main"]

DEFAULT_SRC = repo_root().parent / "shared" / "data" / "fan_audio"
SPLIT_NAME = "split.json"

#: source label -> folder in the layout ("ON" is split between train/good and test/good)
LABEL_FOLDERS = {
    "BLADE FAULT": "test/blade_fault",
    "TAPPING": "test/tapping",
    "FAN_GUARDS": "extra/fan_guards",
    "FAN": "extra/fan_guards",
    "OFF": "extra/off",
}
_NORMAL_LABEL = "ON"
_NAME_RE = re.compile(r"^(?P<label>.+)_(?P<ts>\d{8}T?\d{6})$")


def parse_recording_name(path: str | Path) -> tuple[str, str, str]:
    """``(label, timestamp digits YYYYMMDDhhmmss, session YYYYMMDD)`` from ``<LABEL>_<timestamp>.wav``."""
    stem = Path(path).stem
    m = _NAME_RE.match(stem)
    if not m:
        raise DatasetError(
            f"Recording {Path(path).name} is not named <LABEL>_<timestamp>.wav "
            "(e.g. ON_20200318T204454.wav)."
        )
    ts = m.group("ts").replace("T", "")
    return m.group("label"), ts, ts[:8]


def plan_fan_split(names: list[str]) -> dict[str, str]:
    """Recording file name -> layout folder (``train/good``, ``test/good``, ``test/<kind>``, ``extra/<kind>``)."""
    plan: dict[str, str] = {}
    normal: list[tuple[str, str, str]] = []  # (timestamp, session, name)
    for name in names:
        label, ts, session = parse_recording_name(name)
        if label == _NORMAL_LABEL:
            normal.append((ts, session, name))
        elif label in LABEL_FOLDERS:
            plan[name] = LABEL_FOLDERS[label]
        else:
            known = ", ".join([_NORMAL_LABEL, *LABEL_FOLDERS])
            raise DatasetError(f"Recording {name} has label {label!r}; known labels: {known}.")
    normal.sort()
    test = {name for rank, (_, _, name) in enumerate(normal) if rank % 3 == 1}
    sessions: dict[str, list[str]] = {}
    for _, session, name in normal:
        sessions.setdefault(session, []).append(name)
    for members in sessions.values():
        if len(members) >= 2 and not test.intersection(members):
            test.add(members[len(members) // 2])
    for _, _, name in normal:
        plan[name] = "test/good" if name in test else "train/good"
    return plan


def _cut(n: int, clip: int, min_last: int) -> list[tuple[int, int]]:
    """``(start, end)`` of consecutive clips of ``clip`` samples out of ``n``, plus a shorter
    last one when at least ``min_last`` (and 1) samples remain."""
    bounds = [(s, s + clip) for s in range(0, n - clip + 1, clip)]
    done = bounds[-1][1] if bounds else 0
    if n - done >= max(min_last, 1):
        bounds.append((done, n))
    return bounds


def _data_dir(src: Path) -> Path:
    """``src/data``, the folder of the raw recordings; refused when it does not exist."""
    data_dir = src / "data"
    if not data_dir.is_dir():
        raise DatasetError(
            f"No folder {data_dir}: expected the fan recordings as <src>/data/<LABEL>_<timestamp>.wav "
            f"(default src {DEFAULT_SRC})."
        )
    return data_dir


def _recordings(data_dir: Path) -> list[str]:
    """The names of the ``.wav`` recordings in ``data_dir`` (hidden files left out), sorted."""
    recordings = sorted(p.name for p in data_dir.iterdir() if p.suffix.lower() == ".wav" and not p.name.startswith("."))
    if not recordings:
        raise DatasetError(f"No .wav recordings in {data_dir}.")
    return recordings


def _read_mono(path: Path) -> tuple[np.ndarray, int]:
    """A recording's int16 samples ``(n,)`` (channels averaged and rounded) and its rate."""
    import soundfile as sf

    try:
        y, sr = sf.read(path, dtype="int16", always_2d=True)
    except Exception as exc:  # soundfile raises its own error types
        raise DatasetError(f"Cannot read recording {path}: {exc}") from exc
    if y.shape[1] > 1:
        y = np.rint(y.astype(np.float64).mean(axis=1, keepdims=True)).astype(np.int16)
    return y[:, 0], sr


def _write_clips(y: np.ndarray, sr: int, folder: Path, stem: str, bounds: list[tuple[int, int]]) -> list[str]:
    """Write ``y[a:b]`` for each ``(a, b)`` of ``bounds`` as ``folder/<stem>_<k>.wav`` (16-bit)."""
    import soundfile as sf

    clips = []
    for k, (a, b) in enumerate(bounds):
        clip_name = f"{stem}_{k}.wav"
        write_atomically(folder / clip_name,
                         lambda tmp: sf.write(tmp, y[a:b], sr, subtype="PCM_16", format="WAV"))
        clips.append(clip_name)
    return clips


def _cut_recording(path: Path, out: Path, folder: str, clip_seconds: float, min_last_fraction: float) -> dict:
    """Cut one recording into clips under ``out/folder``; returns its ``split.json`` entry."""
    label, ts, session = parse_recording_name(path.name)
    y, sr = _read_mono(path)
    clip = int(round(clip_seconds * sr))
    bounds = _cut(len(y), clip, int(round(min_last_fraction * clip)))
    d = out / folder
    d.mkdir(parents=True, exist_ok=True)
    clips = _write_clips(y, sr, d, path.stem.replace(" ", "_"), bounds)
    return {
        "recording": path.name,
        "label": label,
        "session": session,
        "timestamp": ts,
        "folder": folder,
        "seconds": round(len(y) / sr, 3),
        "sample_rate": int(sr),
        "clips": clips,
    }


def _remove_stale_clips(out: Path, entries: list[dict]) -> None:
    """Delete the WAV files in the written folders that no entry lists (an earlier build's)."""
    written: dict[str, set[str]] = {}
    for e in entries:
        written.setdefault(e["folder"], set()).update(e["clips"])
    for folder, names in written.items():
        remove_stale_files(out / folder, ".wav", names)


def _split_record(src: Path, entries: list[dict], clip_seconds: float, min_last_fraction: float) -> dict:
    """The content of ``split.json``: the policy, per-folder totals and every recording's entry."""
    folders = {}
    for e in entries:
        f = folders.setdefault(e["folder"], {"recordings": [], "clips": 0})
        f["recordings"].append(e["recording"])
        f["clips"] += len(e["clips"])
    return {
        "source": str(src.resolve()),
        "clip_seconds": float(clip_seconds),
        "min_last_fraction": float(min_last_fraction),
        "policy": (
            "split by source recording; ON sorted by timestamp, rank % 3 == 1 -> test/good "
            "(plus the middle recording of any session left without one), others -> train/good; "
            "BLADE FAULT -> test/blade_fault, TAPPING -> test/tapping, FAN_GUARDS -> extra/fan_guards, "
            "OFF -> extra/off; non-overlapping clips, last partial clip kept if >= min_last_fraction of a clip"
        ),
        "folders": dict(sorted(folders.items())),
        "recordings": entries,
    }


def build_fan_layout(
    src: str | Path,
    out_dir: str | Path,
    *,
    clip_seconds: float = 5.0,
    min_last_fraction: float = 0.5,
) -> Path:
    """Cut the raw fan recordings of ``src/data`` into clips in the MVTec layout under ``out_dir``.

    See the module docstring for the split and the clip policy. WAV files in the layout's
    folders that this build does not write are removed (a rebuild leaves no stale clips);
    ``split.json`` is written last. Returns the output folder.
    """
    src = Path(src).expanduser()
    data_dir = _data_dir(src)
    if clip_seconds <= 0:
        raise ValueError(f"clip_seconds must be > 0, got {clip_seconds}")
    recordings = _recordings(data_dir)
    out = refuse_inside_repo(out_dir)
    plan = plan_fan_split(recordings)

    out.mkdir(parents=True, exist_ok=True)
    (out / SPLIT_NAME).unlink(missing_ok=True)
    entries = [_cut_recording(data_dir / name, out, plan[name], clip_seconds, min_last_fraction)
               for name in recordings]
    _remove_stale_clips(out, entries)
    write_json_atomically(out / SPLIT_NAME, _split_record(src, entries, clip_seconds, min_last_fraction))
    return out


def _summary(out: Path) -> str:
    split = json.loads((out / SPLIT_NAME).read_text())
    rows = [("folder", "recordings", "clips", "sessions")]
    by_rec = {e["recording"]: e for e in split["recordings"]}
    tot_r = tot_c = 0
    for folder, info in split["folders"].items():
        sessions = sorted({by_rec[r]["session"] for r in info["recordings"]})
        rows.append((folder, str(len(info["recordings"])), str(info["clips"]), ",".join(sessions)))
        tot_r += len(info["recordings"])
        tot_c += info["clips"]
    rows.append(("total", str(tot_r), str(tot_c), ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(
        f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}" for r in rows
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m decodemo.data.fan", description=__doc__.split("\n")[0])
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC, help=f"fan_audio folder (default {DEFAULT_SRC})")
    ap.add_argument("--out", required=True, type=Path, help="output folder (outside the repository)")
    ap.add_argument("--clip-seconds", type=float, default=5.0)
    ap.add_argument("--min-last-fraction", type=float, default=0.5,
                    help="keep a final shorter clip when it is at least this fraction of a clip")
    args = ap.parse_args(argv)
    try:
        out = build_fan_layout(args.src, args.out, clip_seconds=args.clip_seconds,
                               min_last_fraction=args.min_last_fraction)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"fan layout in {out}")
    print(_summary(out))
    split = json.loads((out / SPLIT_NAME).read_text())
    for folder, info in split["folders"].items():
        print(f"  {folder}: {', '.join(info['recordings'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
