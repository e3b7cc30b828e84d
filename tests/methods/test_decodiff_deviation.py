"""DeCo-Diff math: schedule, masks, shuffled noise, forward process, target, correction, maps."""

from __future__ import annotations

import pytest
import torch

from decodemo.methods.decodiff.deviation import (
    choose_patch_size,
    correct,
    cosine_alphas_cumprod,
    deviation_noise,
    deviation_target,
    forward_process,
    fuse_maps,
    latent_map,
    patch_masks,
    pixel_map,
    shuffled_patches,
)


def test_cosine_schedule_matches_the_paper():
    ab = cosine_alphas_cumprod(10)
    expected = torch.tensor([0.972, 0.899, 0.787, 0.648, 0.494, 0.341, 0.203, 0.094, 0.024, 0.0])
    torch.testing.assert_close(ab, expected, atol=6e-4, rtol=0)


@pytest.mark.parametrize("seed", range(5))
def test_forward_process_identity(seed):
    """x_t = x0 + sqrt(1 - ab_t) D on random tensors, for every t, mask and noise."""
    g = torch.Generator().manual_seed(seed)
    ab_all = cosine_alphas_cumprod(10)
    x0 = torch.randn(6, 4, 16, 16, generator=g)
    patch = choose_patch_size(16, g)
    m = patch_masks(6, (16, 16), patch, 0.7, g)
    n, _ = deviation_noise(x0, patch, generator=g)
    t = torch.randint(0, 9, (6,), generator=g)  # t = 9 has ab ~ 0: c_t is still finite
    ab = ab_all[t].view(-1, 1, 1, 1)
    x_t = forward_process(x0, m, n, ab)
    d = deviation_target(x0, m, n, ab)
    torch.testing.assert_close(x_t, x0 + (1 - ab).sqrt() * d, atol=1e-5, rtol=1e-5)
    # Clean patches are untouched and have a zero target.
    assert torch.equal(x_t * m, x0 * m) and torch.equal(d * m, torch.zeros_like(d))


def test_masks_patch_structure_and_ratio():
    g = torch.Generator().manual_seed(0)
    m = patch_masks(400, (16, 16), 4, 0.7, g)
    assert m.shape == (400, 1, 16, 16) and set(m.unique().tolist()) <= {0.0, 1.0}
    # constant inside every 4 x 4 patch
    blocks = m.view(400, 1, 4, 4, 4, 4)
    assert torch.equal(blocks.amax((3, 5)), blocks.amin((3, 5)))
    corrupted = 1 - m.mean((1, 2, 3))
    assert 0.3 < float(corrupted.mean()) < 0.4  # E[r] = 0.35 for r ~ U(0, 0.7)
    assert float(corrupted.max()) <= 0.95


def test_patch_size_distribution():
    g = torch.Generator().manual_seed(1)
    sizes = [choose_patch_size(16, g) for _ in range(2000)]
    assert set(sizes) == {1, 2, 4, 8}
    assert abs(sizes.count(1) / 2000 - 0.3 / 0.9) < 0.04
    assert 16 in {choose_patch_size(32, g) for _ in range(300)}


def test_shuffled_patches_are_a_permutation_of_patches():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 4, 8, 8, generator=g)
    s = shuffled_patches(x, 2, g)
    a = torch.nn.functional.unfold(x, 2, stride=2).permute(0, 2, 1).reshape(-1, 16)
    b = torch.nn.functional.unfold(s, 2, stride=2).permute(0, 2, 1).reshape(-1, 16)
    key = lambda t: sorted(map(tuple, t.tolist()))  # noqa: E731
    assert key(a) == key(b) and not torch.equal(s, x)
    with pytest.raises(ValueError):
        shuffled_patches(x, 3)


def test_correction_with_oracle_deviation_recovers_x0():
    """With the true D, the loop from x_8 = x0 + sqrt(1 - ab_8) D returns x0 exactly."""
    ab = cosine_alphas_cumprod(10)
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(2, 4, 8, 8, generator=g)
    d = torch.randn(2, 4, 8, 8, generator=g) * (torch.rand(2, 1, 8, 8, generator=g) > 0.8)
    z_in = x0 + (1 - ab[8]).sqrt() * d
    calls = []

    def oracle(x, t):
        calls.append(int(t[0]))
        return (x - x0) / (1 - ab[int(t[0])]).sqrt()

    z_corr = correct(oracle, z_in, ab)
    torch.testing.assert_close(z_corr, x0, atol=1e-5, rtol=1e-5)
    assert calls == [8, 6, 4, 2, 0]
    # A model that sees no deviation leaves the input as it is.
    torch.testing.assert_close(correct(lambda x, t: torch.zeros_like(x), z_in, ab), z_in)


def test_maps_and_fusions():
    a = torch.zeros(1, 3, 64, 64)
    b = a.clone()
    b[:, 1, 20:30, 20:30] = 1.0
    pm = pixel_map(b, a)
    assert pm.shape == (1, 64, 64) and float(pm.max()) <= 1.0 and float(pm[0, 25, 25]) > 0.9
    assert float(pm[0, 60, 2]) < 1e-3
    z = torch.zeros(1, 4, 8, 8)
    zc = z.clone()
    zc[:, :, 2:4, 2:4] = 0.5
    lm = latent_map(zc, z, (64, 64))
    assert lm.shape == (1, 64, 64) and int(lm[0].argmax()) // 64 in range(12, 36)
    for how in ("geometric", "arithmetic", "pixel", "latent"):
        f = fuse_maps(pm, lm, how)
        assert f.shape == pm.shape and torch.isfinite(f).all()
    torch.testing.assert_close(fuse_maps(pm, lm), (pm * lm).sqrt())
    with pytest.raises(ValueError, match="fusion"):
        fuse_maps(pm, lm, "median")


def test_pixel_map_clips_in_the_papers_units():
    """The paper clips |diff| at 0.4 on images in [-1, 1]; on our [0, 1] images that is 0.2."""
    from decodemo.methods.decodiff.deviation import pixel_map

    a = torch.zeros(1, 3, 64, 64)
    for d01, expected in ((0.1, 0.5), (0.2, 1.0), (0.3, 1.0)):
        b = a.clone()
        b[..., :, :] = d01
        # the official computation on [-1, 1] images: clip(|2 d01|, 0, 0.4) * 2.5
        official = min(2 * d01, 0.4) * 2.5
        assert float(pixel_map(b, a, sigma_at_256=1e-6).mean()) == pytest.approx(official, abs=1e-4)
        assert official == pytest.approx(expected)
