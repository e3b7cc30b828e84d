"""The device a model runs on, loading onto it, and the ZeroGPU wrapper."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from decodemo import settings
from decodemo.errors import DecodemoError


def best_device() -> str:
    """``DECODEMO_DEVICE`` if set (``cpu``, ``cuda``, ``cuda:N``), else CUDA when present, else CPU."""
    import torch

    want = settings.device()
    if want:
        if not re.fullmatch(r"cpu|cuda(:\d+)?", want):
            raise DecodemoError(f"DECODEMO_DEVICE must be cpu, cuda or cuda:N, not {want!r}.")
        if want.startswith("cuda") and not torch.cuda.is_available():
            raise DecodemoError(f"DECODEMO_DEVICE={want} but no CUDA device is available.")
        return want
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_on_device(folder: str | Path, device: str, *, config: dict | None = None):
    """Load a model folder onto ``device``; on CUDA the diffusion UNet runs in float16 (every
    method casts the UNet's input to its dtype and its output back to float32). ``config`` is
    the folder's ``config.json`` when the caller has read it already (it is then not read again)."""
    import torch

    from decodemo.methods import load_model

    model = load_model(folder, device=device, config=config)
    if device.startswith("cuda") and hasattr(model, "unet"):
        model.unet.to(torch.float16)
    return model


def gpu_task(fn: Callable | None = None, *, duration: int = 60):
    """Wrap ``fn`` with ``spaces.GPU`` on a Hugging Face ZeroGPU Space (``SPACES_ZERO_GPU`` set and
    the ``spaces`` package importable); return it unchanged anywhere else."""
    def wrap(f: Callable) -> Callable:
        if not settings.zero_gpu():
            return f
        try:
            import spaces  # type: ignore[import-not-found]
        except ImportError:
            return f
        return spaces.GPU(duration=duration)(f)

    return wrap(fn) if fn is not None else wrap


