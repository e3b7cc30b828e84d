"""The training loop every method shares, built on Hugging Face ``accelerate``.

The same call trains on one CPU, one GPU (mixed precision), or several GPUs and machines
under ``accelerate launch``. Checkpoints are safetensors only (model, optimizer state and a
JSON trainer state), written every ``checkpoint_every`` steps and resumed with ``resume=True``.

Two options of the reference trainings: gradient-norm clipping (``grad_clip``) and an
exponential moving average of the weights (``ema_decay``, with the usual warm-up
``min(decay, (1 + step) / (10 + step))``). With EMA on, validation and the returned module use
the averaged weights, and the checkpoint keeps both (``ema.safetensors``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers.optimization import get_cosine_schedule_with_warmup
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, TensorDataset
from tqdm.auto import tqdm

from decodemo.errors import DecodemoError

__all__ = ["TrainSettings", "resolve_device", "make_accelerator", "train_loop"]


@dataclass
class TrainSettings:
    steps: int = 1500
    batch_size: int = 32
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 100
    seed: int = 0
    checkpoint_every: int = 250
    validate_every: int = 0  # 0 = never
    ema_decay: float = 0.0  # 0 = no EMA of the weights; the InvAD reference uses 0.999
    grad_clip: float = 0.0  # max gradient norm, 0 = no clipping; the InvAD reference uses 1.0
    device: str = "auto"  # auto | cpu | cuda
    mixed_precision: str = "auto"  # auto (bf16 on CUDA, none on CPU) | no | fp16 | bf16

    def __post_init__(self) -> None:
        if not 0.0 <= self.ema_decay < 1.0:
            raise DecodemoError(f"The EMA decay must be in [0, 1) (0 = off), not {self.ema_decay}.")
        if self.grad_clip < 0:
            raise DecodemoError(f"The gradient clipping norm must be >= 0 (0 = off), not {self.grad_clip}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def record(self, device: torch.device | str) -> dict[str, Any]:
        """The settings as a trained model's config records them: with the ``device`` actually used."""
        return {**{k: v for k, v in self.to_dict().items() if k != "device"}, "device": str(device)}


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU. Asking for CUDA without one is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DecodemoError("--device cuda was asked for but no CUDA GPU is available; use --device auto or cpu.")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise DecodemoError(f"Unknown device {device!r}: use auto, cpu or cuda.")
    return torch.device(device)


def make_accelerator(device: str = "auto", mixed_precision: str = "auto") -> Accelerator:
    dev = resolve_device(device)
    if mixed_precision == "auto":
        mixed_precision = "bf16" if dev.type == "cuda" else "no"
    return Accelerator(cpu=dev.type == "cpu", mixed_precision=mixed_precision)


# ------------------------------------------------------------------ checkpoints (safetensors)
def _optimizer_to_safetensors(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, pstate in state["state"].items():
        for key, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimizer_from_safetensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in list(tensors.items()) + list(meta["scalars"].items()):
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def _save_checkpoint(folder: Path, module: nn.Module, optimizer, scheduler, step: int, extra: dict[str, Any],
                     ema: "_EMA | None" = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, str(tmp / "model.safetensors"))
    if ema is not None:
        ema.save(tmp / "ema.safetensors")
    opt_tensors, opt_meta = _optimizer_to_safetensors(optimizer.state_dict())
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    trainer = {"step": step, "optimizer": opt_meta, "scheduler": scheduler.state_dict(), **extra}
    (tmp / "trainer_state.json").write_text(json.dumps(trainer, indent=1, default=float))
    # Swap in atomically-ish so a crash mid-write never leaves a half checkpoint.
    for p in tmp.iterdir():
        p.replace(folder / p.name)
    tmp.rmdir()


class _EMA:
    """An exponential moving average of ``module``'s trainable parameters (float32 copies)."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {n: p.detach().float().clone() for n, p in module.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for n, p in module.named_parameters():
            if n in self.shadow:
                self.shadow[n].mul_(d).add_(p.detach().float(), alpha=1 - d)

    @torch.no_grad()
    def swap(self, module: nn.Module) -> None:
        """Exchange the module's weights and the average (call twice to undo)."""
        for n, p in module.named_parameters():
            if n in self.shadow:
                current = p.detach().float().clone()
                p.copy_(self.shadow[n].to(p.dtype))
                self.shadow[n] = current

    def save(self, path: Path) -> None:
        save_file({k: v.cpu().contiguous() for k, v in self.shadow.items()}, str(path))

    def load(self, path: Path) -> None:
        loaded = load_file(str(path))
        missing = set(self.shadow) - set(loaded)
        if missing:
            raise DecodemoError(f"{path} lacks the EMA of {sorted(missing)[:3]}...; resume without EMA or start again.")
        self.shadow = {k: loaded[k].float().to(self.shadow[k].device) for k in self.shadow}


def _load_checkpoint(folder: Path, module: nn.Module, optimizer, scheduler) -> dict[str, Any]:
    trainer = json.loads((folder / "trainer_state.json").read_text())
    module.load_state_dict(load_file(str(folder / "model.safetensors")))
    optimizer.load_state_dict(_optimizer_from_safetensors(load_file(str(folder / "optimizer.safetensors")), trainer["optimizer"]))
    scheduler.load_state_dict(trainer["scheduler"])
    return trainer


@dataclass
class _Progress:
    """Where a training stands: steps done, the validation history, the seconds of earlier runs
    (a resumed training) and the losses of the recent steps."""

    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds_before: float = 0.0
    losses: list[float] = field(default_factory=list)

    def summary(self, seconds: float) -> dict[str, Any]:
        """What :func:`train_loop` returns: ``final_loss`` is the mean of the last 50 losses."""
        tail = self.losses[-50:]
        return {"steps": self.step, "seconds": seconds, "final_loss": sum(tail) / len(tail) if tail else None,
                "history": self.history}


def _prepare(acc: Accelerator, module: nn.Module, data: torch.Tensor | TensorDataset, settings: TrainSettings):
    """The seeded endless loader, AdamW on the trainable parameters and the cosine schedule with
    warm-up, prepared by ``acc`` -> (module, params, optimizer, loader, scheduler)."""
    dataset = data if isinstance(data, TensorDataset) else TensorDataset(data)
    gen = torch.Generator().manual_seed(settings.seed)
    sampler = RandomSampler(dataset, replacement=True, num_samples=10**9, generator=gen)
    loader = DataLoader(dataset, batch_size=settings.batch_size, sampler=sampler, drop_last=True)
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, settings.warmup_steps, settings.steps)
    module, optimizer, loader, scheduler = acc.prepare(module, optimizer, loader, scheduler)
    return module, params, optimizer, loader, scheduler


def _resume(ckpt: Path, acc: Accelerator, module: nn.Module, optimizer, scheduler, ema: _EMA | None,
            settings: TrainSettings) -> _Progress:
    """Load the checkpoint in ``ckpt`` (weights, optimizer, schedule, EMA) -> its progress."""
    trainer = _load_checkpoint(ckpt, acc.unwrap_model(module), optimizer, scheduler)
    progress = _Progress(trainer["step"], trainer.get("history", []), trainer.get("seconds", 0.0),
                         list(trainer.get("recent_losses", [])))
    if ema is not None:
        if not (ckpt / "ema.safetensors").is_file():
            raise DecodemoError(f"{ckpt} was trained without EMA; resume it without --ema or start again.")
        ema.load(ckpt / "ema.safetensors")
    set_seed(settings.seed + progress.step)
    acc.print(f"Resuming from step {progress.step} ({ckpt}).")
    return progress


def _train_step(acc: Accelerator, module: nn.Module, batch, optimizer, scheduler, params: list[nn.Parameter],
                settings: TrainSettings, step: int) -> float:
    """One optimisation step on ``batch`` (clipped gradients when ``grad_clip``) -> its loss."""
    with acc.accumulate(module):
        loss = module(*batch)
        value = loss.item()
        if not math.isfinite(value):
            raise DecodemoError(f"The training loss became {value} at step {step}; lower --lr and resume.")
        acc.backward(loss)
        if settings.grad_clip > 0 and acc.sync_gradients:
            acc.clip_grad_norm_(params, settings.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return value


def _validate(acc: Accelerator, module: nn.Module, validate: Callable[[nn.Module], dict[str, float]],
              ema: _EMA | None) -> dict[str, float]:
    """``validate`` on the unwrapped module in eval mode (with the averaged weights under EMA)."""
    module.eval()
    if ema is not None:
        ema.swap(acc.unwrap_model(module))
    figures = validate(acc.unwrap_model(module))
    if ema is not None:
        ema.swap(acc.unwrap_model(module))
    module.train()
    return figures


def train_loop(
    module: nn.Module,
    data: torch.Tensor | TensorDataset,
    settings: TrainSettings,
    *,
    checkpoint_dir: str | Path,
    resume: bool = False,
    validate: Callable[[nn.Module], dict[str, float]] | None = None,
    accelerator: Accelerator | None = None,
    desc: str = "train",
) -> dict[str, Any]:
    """Train ``module`` (its ``forward(*batch)`` returns the loss) for ``settings.steps`` steps.

    Args:
        module: trainable module; parameters with ``requires_grad`` are optimised (AdamW,
            cosine schedule with warm-up).
        data: a tensor of training examples ``(N, ...)`` or a ``TensorDataset``.
        checkpoint_dir: where ``model.safetensors``, ``optimizer.safetensors`` and
            ``trainer_state.json`` are written every ``checkpoint_every`` steps and at the end.
        resume: continue from the checkpoint in ``checkpoint_dir`` if there is one.
        validate: called every ``validate_every`` steps with the unwrapped module; its
            figures are printed and kept in the history.

    Returns a summary: steps, seconds, final loss (mean of the last 50 steps), validation history.
    """
    set_seed(settings.seed)
    acc = accelerator or make_accelerator(settings.device, settings.mixed_precision)
    module, params, optimizer, loader, scheduler = _prepare(acc, module, data, settings)
    ckpt = Path(checkpoint_dir)
    ema = _EMA(acc.unwrap_model(module), settings.ema_decay) if settings.ema_decay > 0 else None
    progress = _Progress()
    if resume and (ckpt / "trainer_state.json").is_file():
        progress = _resume(ckpt, acc, module, optimizer, scheduler, ema, settings)
    if progress.step >= settings.steps:
        if ema is not None:
            ema.swap(acc.unwrap_model(module))
        return progress.summary(progress.seconds_before)

    module.train()
    t0 = time.perf_counter()
    bar = tqdm(total=settings.steps, initial=progress.step, desc=desc, disable=not acc.is_local_main_process,
               dynamic_ncols=True)
    batches = iter(loader)
    while progress.step < settings.steps:
        loss = _train_step(acc, module, next(batches), optimizer, scheduler, params, settings, progress.step)
        progress.step += 1
        step, losses = progress.step, progress.losses
        if ema is not None:
            ema.update(acc.unwrap_model(module), step)
        losses.append(loss)
        bar.update(1)
        bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}", lr=f"{scheduler.get_last_lr()[0]:.1e}")
        if validate is not None and settings.validate_every and step % settings.validate_every == 0:
            figures = _validate(acc, module, validate, ema)
            progress.history.append({"step": step, **figures})
            acc.print(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in figures.items()))
        if step % settings.checkpoint_every == 0 or step == settings.steps:
            acc.wait_for_everyone()
            if acc.is_main_process:
                seconds = progress.seconds_before + time.perf_counter() - t0
                _save_checkpoint(ckpt, acc.unwrap_model(module), optimizer, scheduler, step,
                                 {"history": progress.history, "seconds": seconds, "settings": settings.to_dict(),
                                  "recent_losses": losses[-50:]}, ema=ema)
    bar.close()
    module.eval()
    if ema is not None:
        ema.swap(acc.unwrap_model(module))  # the averaged weights are the result
    return progress.summary(progress.seconds_before + time.perf_counter() - t0)
