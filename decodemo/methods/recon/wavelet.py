"""One-level 2-D Haar wavelet transform as fixed, orthonormal tensor operations.

``haar_dwt`` maps ``(B, C, H, W)`` (H, W even) to ``(B, 4C, H/2, W/2)`` ordered per input
channel as LL, LH, HL, HH; ``haar_idwt`` is its exact inverse. With a, b (top row) and c, d
(bottom row) of a 2 x 2 block::

    LL = (a + b + c + d) / 2    LH = (a + b - c - d) / 2
    HL = (a - b + c - d) / 2    HH = (a - b - c + d) / 2

The transform is orthonormal, so it preserves energy and its inverse is its transpose.
"""

from __future__ import annotations

import torch

from decodemo.errors import InputError

__all__ = ["haar_dwt", "haar_idwt"]


def haar_dwt(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    if h % 2 or w % 2:
        raise InputError(f"The Haar transform needs an even height and width, got {h} x {w}.")
    a = x[..., 0::2, 0::2]
    bb = x[..., 0::2, 1::2]
    cc = x[..., 1::2, 0::2]
    d = x[..., 1::2, 1::2]
    ll = (a + bb + cc + d) / 2
    lh = (a + bb - cc - d) / 2
    hl = (a - bb + cc - d) / 2
    hh = (a - bb - cc + d) / 2
    return torch.stack([ll, lh, hl, hh], dim=2).reshape(b, 4 * c, h // 2, w // 2)


def haar_idwt(coeffs: torch.Tensor) -> torch.Tensor:
    b, c4, h, w = coeffs.shape
    if c4 % 4:
        raise InputError(f"Haar coefficients need 4 sub-bands per channel, got {c4} channels.")
    q = coeffs.reshape(b, c4 // 4, 4, h, w)
    ll, lh, hl, hh = q.unbind(2)
    out = coeffs.new_empty(b, c4 // 4, 2 * h, 2 * w)
    out[..., 0::2, 0::2] = (ll + lh + hl + hh) / 2
    out[..., 0::2, 1::2] = (ll + lh - hl - hh) / 2
    out[..., 1::2, 0::2] = (ll - lh + hl - hh) / 2
    out[..., 1::2, 1::2] = (ll - lh - hl + hh) / 2
    return out
