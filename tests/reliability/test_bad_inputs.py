"""Every file of the bad-input corpus (``corpus.py``) through the compare service, and a sample
of it through the real app over HTTP.

Each file must get exactly its expected outcome: refused with its named
:mod:`decodemo.errors` class, in a message that names the file (with the case's words, never an
absolute path on the server, never a Python repr of a buffer), or accepted, with finite values
at the stated size. A decodemo error is the only exception allowed; anything else fails the
test. A case whose ``known_issue`` says decodemo does otherwise today is a strict expected
failure (``xfail(strict=True, raises=AssertionError)``): a crash still fails it, and so does a fix,
so that the corpus is brought up to date.

What runs where, to stay well under a minute on two slow cores:

- every refused file, and a handful of accepted ones (``Case.full``), go through the whole
  :meth:`decodemo.service.Service.compare` over the shipped registry (``texture`` for images,
  ``hum`` for sounds), models included: scores finite, each map at the input's size;
- the other accepted files go through :func:`decodemo.inference.load_input`, the loader
  ``Service.compare`` itself calls first (the same content sniffing, the same image and audio
  loaders, the same mel settings), and their decoded image, waveform and spectrogram are checked;
- the file at the pixel limit is also decoded in a fresh process to bound its peak memory;
- about a dozen files go through the real app (``build_app`` on a loopback port, as in
  ``tests/app/test_app.py``, over the same ``Service`` so that its models load once) with
  ``gradio_client``: the refusals come back as errors carrying the message, and valid files still
  succeed after them.

``pytest -s`` prints a one-line summary: files, refusals by class, acceptances, seconds.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

import decodemo.errors as errors
from decodemo.errors import DecodemoError, InputError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning",
                                        "ignore::RuntimeWarning")


def _load_corpus():
    """``corpus.py`` beside this file, under a name no other test folder can take."""
    name = "decodemo_reliability_corpus"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("corpus.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


corpus = _load_corpus()
_T0 = time.perf_counter()
CASES = corpus.cases()
_MAKE_SECONDS = time.perf_counter() - _T0
DOMAIN = {"image": "texture", "audio": "hum"}
#: seconds one file may take before it counts as a hang
CASE_TIMEOUT = 60

#: the files sent through the real app: refusals of every family, odd names, then valid files
HTTP_REFUSED = ["report.png", "empty.png", "bomb_100k.png", "notes.wav", "silent.wav", "all_nan.wav",
                "too_long_100hz.wav", "claims_an_hour.wav", "<img src=x onerror=alert(1)>.txt.png",
                "esc\x1b[31mred\x1b[0m.txt.png"]
HTTP_REFUSED.append(next(c.name for c in CASES if c.name.startswith("cut_png_") and "half" in c.description))
HTTP_ACCEPTED = ["ünïcödé 画像 🔧.png", "tone.ogg"]

_ABS_PATH = re.compile(r"(?<![\w.~-])/(?:[^\s/'\"]+/)+")
_TALLY: dict[str, str] = {}  # case name -> the class it was refused with, or "accepted"


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    t0 = time.perf_counter()
    corpus.write(root, CASES)
    written = time.perf_counter() - t0
    yield root, _MAKE_SECONDS + written
    seconds = _MAKE_SECONDS + time.perf_counter() - t0  # making the corpus, then every test of this module
    n = len(CASES)
    refused = Counter(v for v in _TALLY.values() if v != "accepted")
    by_class = ", ".join(f"{k} {v}" for k, v in sorted(refused.items(), key=lambda kv: (-kv[1], kv[0])))
    accepted = sum(v == "accepted" for v in _TALLY.values())
    known = [ascii(c.name) for c in CASES if c.known_issue]
    not_run = f", {n - len(_TALLY)} not run" if len(_TALLY) < n else ""
    print(f"\nreliability corpus: {n} files, {sum(refused.values())} refused ({by_class}), {accepted} accepted"
          f"{not_run}; {len(known)} known issues ({', '.join(known)}); {seconds:.1f} s")


@pytest.fixture(scope="module")
def service():
    from decodemo.service import Service

    return Service()


@pytest.fixture(scope="module")
def hum_mel(service):
    """The mel settings ``Service.compare`` decodes a clip with for the ``hum`` models."""
    first = next(iter(service.models_for("hum").values()))
    return service.registry.entry(first).input.get("mel")


@contextmanager
def _deadline(seconds: int, what: str):
    """Fail (not hang) when the body runs longer than ``seconds`` (where SIGALRM exists)."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def expired(signum, frame):
        raise TimeoutError(f"{what} took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _call(case, fn):
    """``fn()`` -> (result, None) or (None, the decodemo error); any other exception fails the test."""
    try:
        with _deadline(CASE_TIMEOUT, repr(case.name)):
            return fn(), None
    except DecodemoError as exc:
        return None, exc
    except Exception as exc:  # noqa: BLE001 - the point of the test
        pytest.fail(f"{case.name!r} ({case.description}): {type(exc).__name__} escaped, not a decodemo error: "
                    f"{exc}\n{''.join(traceback.format_exception(exc))}", pytrace=False)


def _check_message(msg: str, case, shown_name: str, roots) -> None:
    assert shown_name in msg, f"the message does not name the file {shown_name!r}: {msg!r}"
    assert case.phrase in msg, f"the message lacks {case.phrase!r}: {msg!r}"
    for root in roots:
        assert str(root) not in msg, f"a server path in the message: {msg!r}"
    rest = msg.replace(shown_name, "")
    assert not _ABS_PATH.search(rest), f"an absolute path in the message: {msg!r}"
    assert "<_io." not in rest and "Traceback" not in rest and "object at 0x" not in rest, msg


def _check_image(case, height: int, width: int) -> None:
    h, w = case.size
    tol = case.size_tol
    assert abs(height - h) <= tol and abs(width - w) <= tol, f"{height}x{width}, expected {h}x{w} (+-{tol})"
    if tol:  # reduced to the working resolution: at most that many pixels, aspect kept
        assert height * width <= corpus.LIMITS["working_pixels"]


def _check_seconds(case, n_samples: int, sample_rate: int) -> None:
    seconds = n_samples / sample_rate
    assert abs(seconds - case.seconds) <= case.seconds_tol, f"{seconds:.3f} s, expected {case.seconds} s"


def _check_comparison(case, comp) -> None:
    assert comp.modality == case.kind and comp.domain == DOMAIN[case.kind]
    size = tuple(comp.input.shape[:2])
    if case.kind == "image":
        _check_image(case, *size)
    else:
        _check_seconds(case, len(comp.waveform), comp.sample_rate)
        assert np.isfinite(comp.input).all(), "the spectrogram is not finite"
    assert len(comp.outcomes) == 3
    for o in comp.outcomes:
        assert np.isfinite(o.score), f"{o.method} scored {o.score}"
        assert o.map.shape == size, f"{o.method}: map {o.map.shape}, input {size}"
        assert np.isfinite(o.map).all(), f"{o.method}: the map is not finite"
        assert o.decision == ("anomalous" if o.score > o.threshold else "normal")
        if o.reconstruction is not None:
            assert o.reconstruction.shape[:2] == size


def _check_loaded(case, loaded, mel) -> None:
    from decodemo.io.spectrogram import MelConfig

    assert loaded.modality == case.kind, f"taken for {loaded.modality}, expected {case.kind}"
    if case.kind == "image":
        assert loaded.image.mode == "RGB"
        _check_image(case, loaded.image.height, loaded.image.width)
        return
    cfg = MelConfig.from_dict(mel)
    y = loaded.waveform
    assert y.dtype == np.float32 and y.ndim == 1 and np.isfinite(y).all()
    _check_seconds(case, len(y), cfg.sample_rate)
    assert loaded.spectrogram.shape == (cfg.n_mels, 1 + len(y) // cfg.hop_length)
    assert np.isfinite(loaded.spectrogram).all(), "the spectrogram is not finite"


def _param(case, i: int):
    shown = ascii(case.name)[1:-1]
    shown = shown if len(shown) <= 48 else shown[:40] + "..." + shown[-5:]
    marks = [pytest.mark.xfail(strict=True, raises=AssertionError, reason=case.known_issue)] if case.known_issue \
        else []
    return pytest.param(case, id=f"{i:03d}-{shown}", marks=marks)


# ----------------------------------------------------------------------------- the corpus itself
def test_corpus_is_large_varied_small_and_quick(corpus_dir):
    root, seconds = corpus_dir
    assert len(CASES) >= 80 and len({c.name for c in CASES}) == len(CASES)
    assert len({c.data for c in CASES if not c.sparse_size}) >= 80  # distinct contents, not only names
    for c in CASES:
        assert (root / c.name).is_file()
        if c.refused:
            cls = getattr(errors, c.expect, None)
            assert isinstance(cls, type) and issubclass(cls, InputError), c.expect
        else:
            assert (c.size if c.kind == "image" else c.seconds) is not None, c.name
    disk = sum(os.stat(root / c.name).st_blocks * 512 for c in CASES)
    assert disk < 8 * 2**20, f"the corpus takes {disk / 2**20:.1f} MB on disk"
    assert seconds < 5.0, f"making the corpus took {seconds:.1f} s"
    assert {c.expect for c in CASES} >= {"accepted", "EmptyFileError", "UnsupportedFormatError", "CorruptFileError",
                                         "FileTooLargeError", "ImageTooLargeError", "AudioTooShortError",
                                         "AudioTooLongError", "SilentAudioError", "NonFiniteAudioError"}


# ----------------------------------------------------------------------------- every file
@pytest.mark.parametrize("case", [_param(c, i) for i, c in enumerate(CASES)])
def test_each_file_gets_its_outcome(case, corpus_dir, service, hum_mel):
    from decodemo.inference import load_input

    root, _ = corpus_dir
    path = root / case.name
    # the model set of the kind the file must be taken for: a file the service takes for the other
    # kind (by its content, else by its name) is refused for the model set's modality instead
    if case.refused or case.full:
        result, exc = _call(case, lambda: service.compare(path, domain=DOMAIN[case.kind]))
    else:
        mel = hum_mel if case.kind == "audio" else None
        result, exc = _call(case, lambda: load_input(path, mel=mel))
    _TALLY[case.name] = "accepted" if exc is None else type(exc).__name__
    if exc is not None and f"models take {case.kind} input" in str(exc):
        raise AssertionError(f"not taken for {case.kind}: {exc}")
    if case.refused:
        assert exc is not None, f"accepted, expected {case.expect}" + (
            f" (scores {[o.score for o in result.outcomes]})" if hasattr(result, "outcomes") else "")
        assert type(exc).__name__ == case.expect, f"{type(exc).__name__}, expected {case.expect}: {exc}"
        _check_message(str(exc), case, case.basename, [root, Path(root).resolve()])
        return
    assert exc is None, f"refused with {type(exc).__name__}: {exc}"
    if case.full:
        _check_comparison(case, result)
    else:
        _check_loaded(case, result, hum_mel)


def test_the_file_at_the_pixel_limit_decodes_at_bounded_memory(corpus_dir):
    """Decoded in a fresh process: the peak resident memory it adds stays within a few bytes per
    pixel of the file (the loader reduces while decoding), and it comes out at the working size."""
    root, _ = corpus_dir
    case = next(c for c in CASES if c.name == "limit_exact.png")
    script = (
        "import json, resource, sys\n"
        "from decodemo.io.images import load_image\n"
        "load_image(sys.argv[2])\n"  # warm: plugins loaded, allocator primed
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "img = load_image(sys.argv[1])\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(json.dumps({'size': img.size, 'kb': after - before}))\n"
    )
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(repo)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))}
    out = subprocess.run([sys.executable, "-c", script, str(root / case.name), str(root / "one_pixel.png")],
                         capture_output=True, text=True, env=env, timeout=120, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    w, h = got["size"]
    _check_image(case, h, w)
    pixels = corpus.LIMITS["max_pixels"]
    # the docstring of decodemo.io.images says about 3 bytes per pixel while decoding; a grey file
    # takes about 5 (grey, then RGB at full size, then the reduction); any float copy would be 12 or more
    added = got["kb"] * 1024
    assert added < 7 * pixels, f"decoding {pixels:,} pixels added {added / 2**20:.0f} MB at peak"


# ----------------------------------------------------------------------------- the real app over HTTP
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_client(tmp_path_factory, service):
    """The real app on a loopback port, as tests/app/test_app.py starts it, over this module's
    ``Service`` (its models already loaded), with its own data directory."""
    from gradio_client import Client

    mp = pytest.MonkeyPatch()
    mp.setenv("DECODEMO_DATA_DIR", str(tmp_path_factory.mktemp("reliability_app")))
    from decodemo.app.blocks import build_app, launch_kwargs

    demo = build_app(service=service)
    port = _free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                        **launch_kwargs())
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()
        mp.undo()


def test_a_sample_through_the_real_app(app_client, corpus_dir):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    from gradio_client.utils import strip_invalid_filename_characters

    root, _ = corpus_dir
    by_name = {c.name: c for c in CASES}
    server_dirs = [root, Path(root).resolve(),
                   Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")]

    def send(case):
        return app_client.predict(handle_file(str(root / case.name)), api_name="/compare")

    for name in HTTP_REFUSED:
        case = by_name[name]
        assert case.refused and not case.known_issue
        with _deadline(CASE_TIMEOUT, f"{name!r} over HTTP"):
            with pytest.raises(AppError) as ei:
                send(case)
        # the upload arrives under the name Gradio gives it (control and markup characters stripped)
        _check_message(str(ei.value), case, strip_invalid_filename_characters(case.basename), server_dirs)
    for name in HTTP_ACCEPTED:  # the server keeps answering: valid files succeed after the refusals
        case = by_name[name]
        with _deadline(CASE_TIMEOUT, f"{name!r} over HTTP"):
            result, files = send(case)
        assert result["modality"] == case.kind and result["domain"] == DOMAIN[case.kind]
        assert len(result["methods"]) == 3 and all(np.isfinite(m["score"]) for m in result["methods"])
        n_rows, n_cols = result["input_shape"]
        if case.kind == "image":
            _check_image(case, n_rows, n_cols)
        else:
            assert len(result["frame_times"]) == n_cols
            assert result["duration_s"] == pytest.approx(case.seconds, abs=case.seconds_tol)
        maps = {Path(f).name: f for f in files}
        for m in result["methods"]:
            assert np.load(maps[m["map_file"]], allow_pickle=False).shape == (n_rows, n_cols)
