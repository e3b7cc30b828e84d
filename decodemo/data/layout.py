"""The MVTec AD folder layout, for images and for audio.

A dataset is one folder laid out like an MVTec AD category::

    root/
      train/good/*                      normal samples to learn from
      test/good/*                       normal samples to evaluate on
      test/<kind>/*                     anomalous samples, one folder per defect kind
      ground_truth/<kind>/<stem>_mask.png   optional pixel masks (0/255 PNG; <stem>.png also accepted)
      extra/<kind>/*                    optional other states, reported separately
                                        (e.g. a fan switched off): not anomalies, not normal

Sample files are recognised by extension, either images (``.png``, ``.jpg``, ...) or audio
(``.wav``, ``.flac``, ...). One dataset holds one modality: mixing the two raises
:class:`~decodemo.errors.DatasetError`. Hidden files (``.name``) and files with other
extensions (``events.json``, ``README``, ...) are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from decodemo.errors import DatasetError

try:  # the io helpers own the canonical lists; fall back when they are not there yet
    from decodemo.io.images import IMAGE_EXTENSIONS as _IMAGE_EXTENSIONS
except ImportError:  # pragma: no cover - depends on which modules exist
    _IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
try:
    from decodemo.io.audio import AUDIO_EXTENSIONS as _AUDIO_EXTENSIONS
except ImportError:  # pragma: no cover - depends on which modules exist
    _AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")

__all__ = [
    "IMAGE_EXTENSIONS",
    "AUDIO_EXTENSIONS",
    "LAYOUT_HELP",
    "Sample",
    "Layout",
    "scan_layout",
    "load_mask",
    "modality_of",
]


def _normalise_extensions(exts) -> tuple[str, ...]:
    out = []
    for e in exts:
        e = str(e).lower()
        if not e.startswith("."):
            e = "." + e
        if e not in out:
            out.append(e)
    return tuple(out)


IMAGE_EXTENSIONS: tuple[str, ...] = _normalise_extensions(_IMAGE_EXTENSIONS)
AUDIO_EXTENSIONS: tuple[str, ...] = _normalise_extensions(_AUDIO_EXTENSIONS)

LAYOUT_HELP = (
    "Expected the MVTec AD layout: <root>/train/good/* (normal samples), "
    "<root>/test/good/* and <root>/test/<kind>/* (anomalies), optional "
    "<root>/ground_truth/<kind>/<stem>_mask.png (0/255 masks) and optional "
    "<root>/extra/<kind>/* (other states, reported separately). Samples are images "
    f"({', '.join(IMAGE_EXTENSIONS)}) or audio ({', '.join(AUDIO_EXTENSIONS)}), "
    "not both in one dataset."
)

_SPLITS = ("train", "test", "extra")


@dataclass(frozen=True)
class Sample:
    """One sample file of a dataset.

    ``label`` is 0 for normal (kind ``good``) and 1 otherwise; samples under ``extra/``
    also get label 1 but keep split ``'extra'`` so they are never mixed into the anomaly
    metrics. ``mask_path`` is the ground-truth mask of an anomalous test sample when one
    exists; for ``good`` samples it is ``None``, meaning an all-zero mask.
    """

    path: Path
    split: str
    kind: str
    label: int
    mask_path: Path | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def stem(self) -> str:
        return self.path.stem


@dataclass
class Layout:
    """A scanned dataset folder (see :func:`scan_layout`)."""

    root: Path
    modality: str
    train: list[Sample] = field(default_factory=list)
    test: list[Sample] = field(default_factory=list)
    extra: list[Sample] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)

    @property
    def has_masks(self) -> bool:
        """True when at least one test sample has a ground-truth mask file."""
        return any(s.mask_path is not None for s in self.test)

    def test_kinds(self) -> list[str]:
        """The anomaly kinds present in ``test/`` (``good`` excluded), sorted: a copy of
        :attr:`kinds`, for per-kind metrics (each kind against the good samples)."""
        return list(self.kinds)

    @property
    def extra_kinds(self) -> list[str]:
        """The kinds under ``extra/``, sorted."""
        return sorted({s.kind for s in self.extra})

    def samples(self, split: str, kind: str | None = None) -> list[Sample]:
        """The samples of one split (``'train'``, ``'test'`` or ``'extra'``), optionally of one kind."""
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
        items = getattr(self, split)
        return [s for s in items if kind is None or s.kind == kind]


# ----------------------------------------------------------------------------- helpers


def modality_of(path: str | Path) -> str | None:
    """``'image'``, ``'audio'`` or ``None`` (not a sample file) from the file name."""
    p = Path(path)
    if p.name.startswith("."):
        return None
    ext = p.suffix.lower()
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in AUDIO_EXTENSIONS:
        return "audio"
    return None


def _natural_key(name: str):
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name) if t != ""]


def _subdirs(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: _natural_key(p.name),
    )


def _sample_files(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.is_file() and modality_of(p) is not None]
    return sorted(files, key=lambda p: _natural_key(p.name))


def _loose_sample_files(folder: Path) -> list[Path]:
    """Sample files placed directly in ``train/``, ``test/`` or ``extra/`` (a mistake)."""
    return _sample_files(folder) if folder.is_dir() else []


def _find_mask(root: Path, kind: str, stem: str) -> Path | None:
    gt = root / "ground_truth" / kind
    for name in (f"{stem}_mask.png", f"{stem}.png"):
        p = gt / name
        if p.is_file():
            return p
    return None


def _kind_samples(root: Path, split: str, kind_dir: Path) -> list[Sample]:
    files = _sample_files(kind_dir)
    rel = kind_dir.relative_to(root).as_posix()
    if not files:
        raise DatasetError(
            f"Folder {rel}/ in {root} holds no sample files (images: {', '.join(IMAGE_EXTENSIONS)}; "
            f"audio: {', '.join(AUDIO_EXTENSIONS)}). Remove the empty folder or add samples. {LAYOUT_HELP}"
        )
    kind = kind_dir.name
    out = []
    for f in files:
        if split == "extra":
            out.append(Sample(f, "extra", kind, 1, None))
        elif kind == "good":
            out.append(Sample(f, split, "good", 0, None))
        else:
            out.append(Sample(f, split, kind, 1, _find_mask(root, kind, f.stem)))
    return out


# ----------------------------------------------------------------------------- scanning


def _checked_root(root: str | Path) -> Path:
    """``root`` resolved, refusing a missing path, a file, and a folder without train/ or test/."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"Dataset folder {root} does not exist. {LAYOUT_HELP}")
    if not root.is_dir():
        raise DatasetError(f"Dataset path {root} is not a folder. {LAYOUT_HELP}")
    root = root.resolve()
    if not (root / "train").is_dir() and not (root / "test").is_dir():
        raise DatasetError(f"Folder {root} has neither train/ nor test/. {LAYOUT_HELP}")
    return root


def _refuse_loose_files(root: Path) -> None:
    """Refuse sample files placed directly in ``train/``, ``test/`` or ``extra/``."""
    for d in (root / split for split in _SPLITS):
        loose = _loose_sample_files(d)
        if loose:
            raise DatasetError(
                f"Sample files sit directly in {d.name}/ of {root} (e.g. {loose[0].name}); "
                f"put them in {d.name}/<kind>/ ({d.name}/good/ for normal samples). {LAYOUT_HELP}"
            )


def _train_samples(root: Path, require_train: bool) -> list[Sample]:
    """The samples of ``train/good`` (the only kind ``train/`` may hold)."""
    train_dir = root / "train"
    train: list[Sample] = []
    if train_dir.is_dir():
        others = [d.name for d in _subdirs(train_dir) if d.name != "good"]
        if others:
            raise DatasetError(
                f"train/ of {root} holds folders other than good/ ({', '.join(others)}); "
                f"training data is normal only. Move anomalies to test/<kind>/. {LAYOUT_HELP}"
            )
        if (train_dir / "good").is_dir():
            train = _kind_samples(root, "train", train_dir / "good")
    if require_train and not (train_dir / "good").is_dir():
        raise DatasetError(f"Missing folder train/good/ in {root}: it must hold the normal training samples. {LAYOUT_HELP}")
    return train


def _test_samples(root: Path, require_test: bool) -> list[Sample]:
    """The samples of ``test/``: ``good`` first, then the kinds in natural order."""
    test_dir = root / "test"
    test: list[Sample] = []
    if test_dir.is_dir():
        kind_dirs = _subdirs(test_dir)
        kind_dirs.sort(key=lambda d: (d.name != "good", _natural_key(d.name)))
        for d in kind_dirs:
            test.extend(_kind_samples(root, "test", d))
    if require_test and not test:
        what = "holds no kind folders" if test_dir.is_dir() else "is missing"
        raise DatasetError(f"Folder test/ of {root} {what}; test/good/ and test/<kind>/ are required here. {LAYOUT_HELP}")
    return test


def _extra_samples(root: Path) -> list[Sample]:
    """The samples of the optional ``extra/<kind>/`` folders."""
    extra_dir = root / "extra"
    extra: list[Sample] = []
    if extra_dir.is_dir():
        for d in _subdirs(extra_dir):
            extra.extend(_kind_samples(root, "extra", d))
    return extra


def _single_modality(root: Path, everything: list[Sample]) -> str:
    """The one modality of all samples; refuses no samples, and images mixed with audio."""
    if not everything:
        raise DatasetError(f"No samples found in {root}. {LAYOUT_HELP}")
    by_modality: dict[str, list[Sample]] = {}
    for s in everything:
        by_modality.setdefault(modality_of(s.path), []).append(s)
    if len(by_modality) > 1:
        img, aud = by_modality["image"][0], by_modality["audio"][0]
        raise DatasetError(
            f"Dataset {root} mixes images and audio (e.g. {img.path.relative_to(root).as_posix()} and "
            f"{aud.path.relative_to(root).as_posix()}); one dataset holds one modality. {LAYOUT_HELP}"
        )
    return next(iter(by_modality))


def scan_layout(root: str | Path, *, require_train: bool = True, require_test: bool = False) -> Layout:
    """Read a dataset folder in the MVTec AD layout.

    Samples are sorted (``good`` first, then kinds alphabetically; file names in natural
    order), so two scans of the same folder give the same lists.

    ``require_train``: ``train/good`` must exist and hold samples.
    ``require_test``: ``test/`` must exist and hold samples.

    Raises :class:`DatasetError` when the root is missing, a required folder is missing,
    a kind folder is empty, sample files sit outside a kind folder, ``train/`` holds
    anything but ``good``, or images and audio are mixed.
    """
    root = _checked_root(root)
    _refuse_loose_files(root)
    train = _train_samples(root, require_train)
    test = _test_samples(root, require_test)
    extra = _extra_samples(root)
    modality = _single_modality(root, train + test + extra)
    kinds = sorted({s.kind for s in test if s.kind != "good"}, key=_natural_key)
    return Layout(root=root, modality=modality, train=train, test=test, extra=extra, kinds=kinds)


# ----------------------------------------------------------------------------- masks


def load_mask(sample: Sample, size_hw: tuple[int, int] | None = None) -> np.ndarray:
    """The ground-truth mask of ``sample`` as a bool array of shape ``size_hw``.

    All False when the sample has no mask file (normal samples). The mask is resized with
    nearest-neighbour when ``size_hw`` differs from the file's size; ``size_hw=None`` keeps
    the file's size (and needs a mask file). Masks may be 0/255 or 0/1.
    """
    if sample.mask_path is None:
        if size_hw is None:
            raise ValueError("size_hw is needed for a sample without a mask file")
        h, w = (int(v) for v in size_hw)
        return np.zeros((h, w), dtype=bool)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(sample.mask_path) as im:
            im = im.convert("L")
            if size_hw is not None:
                h, w = (int(v) for v in size_hw)
                if im.size != (w, h):
                    im = im.resize((w, h), resample=Image.NEAREST)
            arr = np.asarray(im)
    except (OSError, UnidentifiedImageError) as exc:
        raise DatasetError(f"Cannot read mask {sample.mask_path}: {exc}. Masks are 0/255 PNG files.") from exc
    threshold = 0 if arr.size and arr.max() <= 1 else 127
    return arr > threshold


# ----------------------------------------------------------------------------- writers' guard


def repo_root() -> Path:
    """The folder that holds the ``decodemo`` package (the repository in a checkout)."""
    return Path(__file__).resolve().parents[2]


def refuse_inside_repo(out_dir: str | Path) -> Path:
    """Resolve ``out_dir`` and refuse it when it lies inside the repository.

    Third-party data (elpv, the fan recordings) must never be written into the project
    checkout; builders call this before writing anything.
    """
    out = Path(out_dir).expanduser().resolve()
    repo = repo_root()
    if out == repo or repo in out.parents:
        raise DatasetError(
            f"Refusing to write a dataset into the repository ({out} is inside {repo}); "
            "choose an output folder outside the checkout, e.g. ../data/<name>."
        )
    return out
