"""The shared DDIM arithmetic (``decodemo.ops.ddim``): the formulas, an exact forward-then-inverse
round trip on a known schedule, and the same numbers as the loops invad and recon wrote before."""

from __future__ import annotations

import torch

from decodemo.ops.ddim import (
    add_noise,
    ddim_invert,
    ddim_reverse,
    ddim_step,
    ddim_walk,
    make_alphas_cumprod,
    predict_x0,
)


def _linear(T: int = 1000) -> torch.Tensor:
    return torch.cumprod(1 - torch.linspace(1e-4, 0.02, T), 0)


def _eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A deterministic stand-in for a network: depends on x and t."""
    return torch.tanh(0.3 * x + 1e-3 * t.float().view(-1, 1, 1, 1))


def test_schedule_is_diffusers_linear_and_cosine():
    from diffusers import DDPMScheduler

    assert torch.equal(make_alphas_cumprod(1000), _linear())
    cos = DDPMScheduler(num_train_timesteps=10, beta_schedule="squaredcos_cap_v2").alphas_cumprod.float()
    assert torch.equal(make_alphas_cumprod(10, "squaredcos_cap_v2"), cos)


def test_step_is_the_formula():
    ab = _linear()
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    a, b = ab[600], ab[300]
    x0_hat = (x - torch.sqrt(1 - a) * eps) / torch.sqrt(a)
    assert torch.equal(predict_x0(x, eps, a), x0_hat)
    assert torch.equal(ddim_step(x, eps, a, b), torch.sqrt(b) * x0_hat + torch.sqrt(1 - b) * eps)
    assert torch.equal(add_noise(x0_hat, eps, b), torch.sqrt(b) * x0_hat + torch.sqrt(1 - b) * eps)
    torch.testing.assert_close(ddim_step(x, eps, a, torch.tensor(1.0)), x0_hat)  # to alpha_bar 1: the clean estimate
    torch.testing.assert_close(ddim_step(x, eps, a, torch.tensor(0.0)), eps)  # to alpha_bar 0: the noise


def test_forward_then_inverse_round_trip():
    # x0 = sqrt(ab_0) a + sqrt(1 - ab_0) e and a model that always predicts e: inverting up the
    # grid lands on the forward process at the top, and reversing from there gives back a.
    ab = _linear()
    g = torch.Generator().manual_seed(1)
    a, e = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    x0 = add_noise(a, e, ab[0])
    calls = []
    z = ddim_invert(lambda x, t: (calls.append(int(t[0])), e)[1], x0, ab, [0, 333, 666, 999])
    assert calls == [0, 333, 666]
    torch.testing.assert_close(z, add_noise(a, e, ab[999]), rtol=1e-5, atol=1e-5)
    calls = []
    back = ddim_reverse(lambda x, t: (calls.append(int(t[0])), e)[1], z, ab, [999, 666, 333])
    assert calls == [999, 666, 333]
    torch.testing.assert_close(back, a, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(predict_x0(x0, e, ab[0]), a, rtol=1e-4, atol=1e-4)


def test_walk_calls_the_model_once_per_timestep():
    ab = _linear()
    seen = []
    out = ddim_walk(lambda x, t: (seen.append(t.clone()), torch.zeros_like(x))[1], torch.ones(3, 1, 2, 2),
                    [500, 100], torch.stack([ab[500], ab[100], torch.tensor(1.0)]))
    assert [s.tolist() for s in seen] == [[500] * 3, [100] * 3] and all(s.dtype == torch.long for s in seen)
    torch.testing.assert_close(out, torch.ones(3, 1, 2, 2) / ab[500].sqrt())


def _invad_before(eps_model, x0, alphas_cumprod, timesteps):
    """invad's inversion loop as it was written in ``methods/invad/inversion.py``."""
    ab = alphas_cumprod.to(device=x0.device, dtype=torch.float32)
    ab = torch.cat([ab, ab.new_zeros(1)])
    x = x0.float()
    for t, t_next in zip(timesteps[:-1], timesteps[1:]):
        t_batch = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        eps = eps_model(x, t_batch).float()
        x0_hat = (x - (1 - ab[t]).sqrt() * eps) / ab[t].sqrt()
        x = ab[t_next].sqrt() * x0_hat + (1 - ab[t_next]).sqrt() * eps
    return x


def _recon_before(eps_fn, x_t, alphas_cumprod, timesteps):
    """recon's reverse loop as it was written in ``methods/recon/model.py``."""
    x = x_t
    for i, t in enumerate(timesteps):
        ab = alphas_cumprod[t]
        ab_prev = alphas_cumprod[timesteps[i + 1]] if i + 1 < len(timesteps) else alphas_cumprod.new_tensor(1.0)
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        eps = eps_fn(x, tt).to(x.dtype)
        x0 = (x - (1 - ab).sqrt() * eps) / ab.sqrt()
        x = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
    return x


def test_the_methods_use_the_shared_functions_with_unchanged_numbers():
    from decodemo.methods.invad import inversion
    from decodemo.methods.recon import model as recon_model

    assert inversion.ddim_invert is ddim_invert and recon_model.ddim_reconstruct is ddim_reverse
    ab = make_alphas_cumprod(1000)
    x = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    for ts in ([0, 333, 666, 999], [0, 500, 999, 1000], [0, 1000]):
        assert torch.equal(ddim_invert(_eps, x, ab, ts), _invad_before(_eps, x, ab, ts))
    for ts in ([300, 240, 180, 120, 60], [10]):
        assert torch.equal(ddim_reverse(_eps, x, ab, ts), _recon_before(_eps, x, ab, ts))
