"""The shared training loop's options: EMA of the weights and gradient-norm clipping."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from decodemo.errors import DecodemoError

from decodemo.training.loop import TrainSettings, train_loop


class Regression(nn.Module):
    """forward(x) -> the loss: a linear fit of y = 3x - 1 with noise."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(1, 1)
        self.frozen = nn.Parameter(torch.ones(1), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = 3 * x - 1 + 0.3 * torch.randn_like(x)
        return (self.lin(x) - y).pow(2).mean()


DATA = torch.linspace(-1, 1, 64).unsqueeze(1)
FAST = dict(batch_size=8, lr=0.3, warmup_steps=0, checkpoint_every=10, device="cpu")


def _weights(m: nn.Module) -> torch.Tensor:
    return torch.cat([m.lin.weight.detach().flatten(), m.lin.bias.detach()])


def _train(tmp, steps=40, resume=False, **kw):
    torch.manual_seed(0)
    m = Regression()
    summary = train_loop(m, DATA, TrainSettings(steps=steps, **FAST, **kw), checkpoint_dir=tmp, resume=resume)
    return m, summary


def test_ema_returns_the_average_and_resumes_exactly(tmp_path):
    plain, _ = _train(tmp_path / "plain")
    ema, _ = _train(tmp_path / "ema", ema_decay=0.9)
    assert not (tmp_path / "plain" / "ema.safetensors").exists() and (tmp_path / "ema" / "ema.safetensors").is_file()
    # the average lags the last iterate but sits near the fit (y = 3x - 1)
    assert not torch.allclose(_weights(plain), _weights(ema))
    assert torch.allclose(_weights(ema), torch.tensor([3.0, -1.0]), atol=0.5)
    # the raw last iterate is what the checkpoint's model holds; the loop returns the average
    from safetensors.torch import load_file

    raw = load_file(str(tmp_path / "ema" / "model.safetensors"))
    assert torch.allclose(torch.cat([raw["lin.weight"].flatten(), raw["lin.bias"]]), _weights(plain), atol=1e-6)
    # resuming a finished training gives the same averaged weights
    again, _ = _train(tmp_path / "ema", resume=True, ema_decay=0.9)
    assert torch.allclose(_weights(again), _weights(ema))
    # stopping at 20 and resuming to 40 carries the average on (a resumed run draws other batches)
    _train(tmp_path / "half", steps=20, ema_decay=0.9)
    at20 = load_file(str(tmp_path / "half" / "ema.safetensors"))
    resumed, _ = _train(tmp_path / "half", steps=40, resume=True, ema_decay=0.9)
    at40 = load_file(str(tmp_path / "half" / "ema.safetensors"))
    assert not torch.equal(at20["lin.weight"], at40["lin.weight"])
    assert torch.allclose(_weights(resumed), torch.tensor([3.0, -1.0]), atol=0.5)
    assert not resumed.frozen.requires_grad and resumed.frozen.item() == 1.0 and "frozen" not in at40
    # a checkpoint trained without EMA is not silently resumed with a fresh average
    with pytest.raises(DecodemoError, match="without EMA"):
        _train(tmp_path / "plain", steps=60, resume=True, ema_decay=0.9)


def test_validation_sees_the_averaged_weights(tmp_path):
    seen = []

    def validate(m):
        seen.append(_weights(m).clone())
        return {"w": float(m.lin.weight.detach())}

    torch.manual_seed(0)
    m = Regression()
    train_loop(m, DATA, TrainSettings(steps=20, validate_every=20, ema_decay=0.9, **FAST), checkpoint_dir=tmp_path,
               validate=validate)
    assert torch.allclose(seen[-1], _weights(m))  # validated on the same (averaged) weights that are returned


def test_gradient_clipping_bounds_the_gradient_norm(tmp_path, monkeypatch):
    from accelerate import Accelerator

    norms = []
    real = Accelerator.clip_grad_norm_

    def spy(self, parameters, max_norm, *a, **k):
        parameters = list(parameters)
        total = real(self, parameters, max_norm, *a, **k)
        norms.append((float(total), float(torch.cat([p.grad.flatten() for p in parameters]).norm())))
        return total

    monkeypatch.setattr(Accelerator, "clip_grad_norm_", spy)
    _train(tmp_path / "off", steps=5)
    assert norms == []
    _train(tmp_path / "on", steps=5, grad_clip=0.01)
    assert len(norms) == 5
    assert all(after <= 0.01 + 1e-6 for _, after in norms) and any(before > 0.01 for before, _ in norms)


def test_bad_settings_are_refused():
    with pytest.raises(DecodemoError, match="EMA decay"):
        TrainSettings(ema_decay=1.0)
    with pytest.raises(DecodemoError, match="clipping"):
        TrainSettings(grad_clip=-1)
