"""Seeded synthetic data for tests and examples: textures with drawn defects, machine hum with
anomalies, and writers for the MVTec folder layout. numpy + Pillow only; fast.

Images: :func:`make_texture` draws a regular oriented stripe/grid texture in a fixed palette
(per-sample random phase, a small orientation/period jitter and mild noise, so normal
samples resemble each other) and optionally one defect in a colour outside the texture's
value range, returning the exact mask of the pixels that changed.

Audio: :func:`make_hum` synthesises a ~120 Hz machine hum with harmonics plus low noise,
and optionally an anomaly, returning the time-frequency boxes of the anomaly (events);
:func:`events_to_tf_mask` rasterises those boxes onto a spectrogram grid (both live in
:mod:`decodemo.data.hum` and are exported here).

Command line: ``python -m decodemo.data.synthetic --out DIR --modality image|audio``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from decodemo.data.hum import AUDIO_ANOMALIES, SAMPLE_RATE, events_to_tf_mask, make_hum
from decodemo.data.writing import remove_stale_files

__all__ = [
    "DEFECT_KINDS",
    "AUDIO_ANOMALIES",
    "SAMPLE_RATE",
    "make_texture",
    "make_hum",
    "events_to_tf_mask",
    "write_synthetic_layout",
    "main",
]

DEFECT_KINDS = ("scratch", "spot", "crack")

# texture palette: values stay within [_BASE_LO, _BASE_HI] in every channel
_BASE_LO, _BASE_HI = 80, 200
_PALETTE = (np.array([96.0, 108.0, 124.0]), np.array([172.0, 178.0, 184.0]))
# defect colours lie outside [_BASE_LO, _BASE_HI] in every channel, even with their jitter,
# so every drawn pixel differs from the texture underneath
_DEFECT_COLOURS = {
    "scratch": (np.array([240, 236, 222]), 5),  # bright
    "spot": (np.array([52, 34, 22]), 5),  # dark rust
    "crack": (np.array([22, 20, 26]), 4),  # near black
}


# ----------------------------------------------------------------------------- images


def _base_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    theta = math.radians(30.0 + rng.uniform(-2.0, 2.0))
    period = size / 8.0 * rng.uniform(0.97, 1.03)
    p1, p2 = rng.uniform(0.0, 2.0 * math.pi, size=2)
    u = xx * math.cos(theta) + yy * math.sin(theta)
    v = -xx * math.sin(theta) + yy * math.cos(theta)
    s = 0.6 * np.sin(2 * math.pi * u / period + p1) + 0.4 * np.sin(2 * math.pi * v / (1.5 * period) + p2)
    t = (s + 1.0) / 2.0  # [0, 1]
    c0, c1 = _PALETTE
    img = c0 + t[..., None] * (c1 - c0)
    img += rng.normal(0.0, 3.0, size=(size, size, 1))  # luminance noise
    img += rng.normal(0.0, 1.0, size=(size, size, 3))  # slight colour noise
    return np.clip(np.rint(img), _BASE_LO, _BASE_HI).astype(np.uint8)


def _clip_pt(p, size, margin):
    return (float(np.clip(p[0], margin, size - 1 - margin)), float(np.clip(p[1], margin, size - 1 - margin)))


def _defect_shape(rng: np.random.Generator, size: int, defect: str) -> np.ndarray:
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    margin = max(2, size // 32)
    if defect == "scratch":
        cx, cy = rng.uniform(0.3, 0.7, size=2) * size
        length = rng.uniform(0.3, 0.6) * size
        ang = rng.uniform(0.0, math.pi)
        dx, dy = math.cos(ang) * length / 2, math.sin(ang) * length / 2
        width = int(rng.integers(1, 3)) * max(1, size // 128)
        p0, p1 = _clip_pt((cx - dx, cy - dy), size, margin), _clip_pt((cx + dx, cy + dy), size, margin)
        draw.line([p0, p1], fill=255, width=width)
    elif defect == "spot":
        cx, cy = rng.uniform(0.25, 0.75, size=2) * size
        r = rng.uniform(0.04, 0.09) * size
        n = 14
        angles = np.linspace(0, 2 * math.pi, n, endpoint=False) + rng.uniform(0, 2 * math.pi)
        radii = r * (1.0 + 0.25 * rng.uniform(-1.0, 1.0, n))
        pts = [_clip_pt((cx + rr * math.cos(a), cy + rr * math.sin(a)), size, margin) for a, rr in zip(angles, radii)]
        draw.polygon(pts, fill=255)
    elif defect == "crack":
        x, y = rng.uniform(0.3, 0.7, size=2) * size
        heading = rng.uniform(0.0, 2 * math.pi)
        step = max(2.0, 0.035 * size)
        pts = [_clip_pt((x, y), size, margin)]
        for _ in range(int(rng.integers(8, 15))):
            heading += rng.uniform(-0.6, 0.6)
            x, y = x + step * math.cos(heading), y + step * math.sin(heading)
            pts.append(_clip_pt((x, y), size, margin))
        width = int(rng.integers(1, 3)) * max(1, size // 128)
        draw.line(pts, fill=255, width=width, joint="curve")
    else:  # pragma: no cover - checked by the caller
        raise ValueError(defect)
    shape = np.asarray(canvas) > 0
    if not shape.any():  # degenerate draw (cannot happen with the margins above); mark one pixel
        shape[size // 2, size // 2] = True
    return shape


def make_texture(rng_or_seed, *, size: int = 128, defect: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic texture ``(img uint8 (size,size,3), mask bool (size,size))``.

    With ``defect`` None the mask is all False. Otherwise one defect of that kind
    (``'scratch'``, ``'spot'``, ``'crack'``) is drawn on the very texture that
    ``defect=None`` gives for the same seed (the texture is drawn from the generator
    first), and the mask is exactly the set of pixels that differ from it.
    """
    if defect is not None and defect not in DEFECT_KINDS:
        raise ValueError(f"defect must be None or one of {DEFECT_KINDS}, got {defect!r}")
    size = int(size)
    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    rng = np.random.default_rng(rng_or_seed)  # a Generator is returned as it is
    base = _base_texture(rng, size)
    if defect is None:
        return base, np.zeros((size, size), dtype=bool)
    shape = _defect_shape(rng, size, defect)
    colour, jitter = _DEFECT_COLOURS[defect]
    n = int(shape.sum())
    values = colour[None, :] + rng.integers(-jitter, jitter + 1, size=(n, 3))
    img = base.copy()
    img[shape] = np.clip(values, 0, 255).astype(np.uint8)
    mask = np.any(img != base, axis=-1)
    return img, mask


# ----------------------------------------------------------------------------- layouts


def write_synthetic_layout(
    root: str | Path,
    *,
    modality: str = "image",
    n_train: int = 40,
    n_test_good: int = 10,
    n_test_per_kind: int = 6,
    size: int = 128,
    seconds: float = 2.0,
    seed: int = 0,
) -> Path:
    """Write a synthetic dataset in the MVTec layout under ``root``; return ``root``.

    Images: ``train/good``, ``test/good``, ``test/<scratch|spot|crack>`` as RGB PNG
    (``000.png``, ...) and ``ground_truth/<kind>/<stem>_mask.png`` (0/255).
    Audio: ``train/good``, ``test/good``, ``test/<click|tone_shift|burst>`` as 16-bit WAV at
    16 kHz, with ``test/<kind>/events.json`` mapping each file name to its event boxes.
    Each file is generated from its own seed (``seed``, split, kind, index), so a file's
    content does not depend on the counts. Sample files left from an earlier run in those
    folders are removed.
    """
    if modality not in ("image", "audio"):
        raise ValueError(f"modality must be 'image' or 'audio', got {modality!r}")
    root = Path(root).expanduser()
    kinds = DEFECT_KINDS if modality == "image" else AUDIO_ANOMALIES
    plan = [("train", "good", None, int(n_train)), ("test", "good", None, int(n_test_good))]
    plan += [("test", k, k, int(n_test_per_kind)) for k in kinds]
    ext = ".png" if modality == "image" else ".wav"
    split_ids = {"train": 0, "test": 1}
    kind_ids = {"good": 0, **{k: i + 1 for i, k in enumerate(kinds)}}

    if modality == "image":
        from PIL import Image
    else:
        import soundfile as sf

    for split, kind, anomaly, count in plan:
        d = root / split / kind
        if count <= 0:  # an empty folder would not be a valid layout
            continue
        d.mkdir(parents=True, exist_ok=True)
        names = [f"{i:03d}{ext}" for i in range(count)]
        remove_stale_files(d, ext, set(names))
        if modality == "image" and anomaly is not None:
            gt = root / "ground_truth" / kind
            gt.mkdir(parents=True, exist_ok=True)
            remove_stale_files(gt, ".png", {f"{i:03d}_mask.png" for i in range(count)})
        all_events = {}
        for i, name in enumerate(names):
            rng = np.random.default_rng([int(seed), split_ids[split], kind_ids[kind], i])
            if modality == "image":
                img, mask = make_texture(rng, size=size, defect=anomaly)
                Image.fromarray(img).save(d / name)
                if anomaly is not None:
                    Image.fromarray(mask.astype(np.uint8) * 255).save(gt / f"{i:03d}_mask.png")
            else:
                y, events = make_hum(rng, seconds=seconds, sample_rate=SAMPLE_RATE, anomaly=anomaly)
                sf.write(d / name, y, SAMPLE_RATE, subtype="PCM_16", format="WAV")
                all_events[name] = events
        if modality == "audio" and anomaly is not None:
            (d / "events.json").write_text(json.dumps(all_events, indent=1))
    return root


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m decodemo.data.synthetic", description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--modality", choices=("image", "audio"), default="image")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-train", type=int, default=40)
    ap.add_argument("--n-test-good", type=int, default=10)
    ap.add_argument("--n-test-per-kind", type=int, default=6)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args(argv)
    out = write_synthetic_layout(
        args.out, modality=args.modality, n_train=args.n_train, n_test_good=args.n_test_good,
        n_test_per_kind=args.n_test_per_kind, size=args.size, seconds=args.seconds, seed=args.seed,
    )
    kinds = DEFECT_KINDS if args.modality == "image" else AUDIO_ANOMALIES
    print(f"synthetic {args.modality} layout in {out}")
    print(f"  train/good: {args.n_train}  test/good: {args.n_test_good}  "
          + "  ".join(f"test/{k}: {args.n_test_per_kind}" for k in kinds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
