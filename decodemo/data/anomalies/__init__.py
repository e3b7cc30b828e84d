"""Seeded synthetic anomalies with exact masks, for a validation set made of normal images only.

Training never reads ``test/``. To validate and select settings anyway, held-out *normal*
training inputs are corrupted with synthetic anomalies (DRAEM / CutPaste style) whose masks
are known exactly; :func:`make_validation_set` puts the normals and their corrupted copies
together in a :class:`SyntheticSet`.

Image kinds (:data:`IMAGE_KINDS`; pixel sizes are given at 256 px and scale with
``sqrt(H * W) / 256``):

``cutpaste_patch``
    A rectangle of 2-10 % of the image area (aspect ratio 0.3-3.3, log-uniform) is cut from a
    donor at a random place, colour-jittered with probability 1/2, and pasted at another random
    place. Mask: the pasted rectangle.
``cutpaste_scar``
    A thin long rectangle (width 2-16 px, length 10-25 % of the side) is cut from a donor,
    rotated by a random angle together with its rectangle mask (the mask is the exact set of
    pixel centres inside the rotated rectangle; the patch is sampled bilinearly), optionally
    colour-jittered and pasted. Mask: the rotated scar's pixels.
``perlin_texture``
    DRAEM style: a Perlin noise map (random 2**k periods per axis) thresholded at 0.5 gives a
    blob mask covering 0.5-30 % of the image (redrawn when outside that range; a quantile
    threshold is the fallback). A foreign texture (a flipped / shifted donor with permuted,
    jittered or inverted colours, a colourised second Perlin noise, or colour stripes) is
    blended in: ``out = (1 - beta) * texture + beta * image`` inside the mask, beta ~ U(0, 0.6).
    Mask: the binary blob.
``blur``
    A random ellipse (1-10 % of the area) is replaced by a Gaussian-blurred copy
    (sigma 2-6 px, at least 1.5 px). Mask: the ellipse.
``colour``
    A random ellipse (1-10 %) gets per-channel gains, a brightness gain, a contrast change and
    per-channel offsets (clipped to [0, 1]); its mean absolute change is at least 0.1.
    Mask: the ellipse.
``warp``
    Inside a random ellipse (1-10 %) pixels are displaced by a smooth Perlin displacement field
    (peak amplitude 3-10 px, at least 2 px) tapered to zero at the ellipse border and resampled
    bilinearly. Mask: the ellipse.

Spectrogram kinds (:data:`AUDIO_KINDS`; ``spec`` is ``(rows = frequency, cols = time)`` in
[0, 1], either row orientation; the 1-3 row / column sizes are given at 256 bins and grow
with larger spectrograms, never below the given count; other sizes are fractions):

``click``
    A short broadband impulse: 1-3 columns over a contiguous 60-100 % of the rows are set to a
    high energy (0.8-1.0, with a little per-pixel variation and a decay over the columns).
``tone_burst``
    A narrow band of 1-3 rows is raised (``max(spec, level)``, level 0.75-1.0) over a time
    span of 10-50 % of the columns.
``band_noise``
    A band of 10-30 % of the rows over 10-40 % of the columns gets random noise energy added
    (mean increase 0.15-0.35, clipped to [0, 1]).
``dropout``
    A time span of 5-20 % of the columns (all rows) is multiplied by 0.0-0.3.

Exactness: every generator draws its mask first and returns
``where(mask, changed, original)``, so pixels outside the mask are bit-for-bit unchanged
and the mask is never empty. A mask must not label an invisible change: when a draw changes
its region by less than a minimum mean absolute difference (0.05 for images, 0.1 for
``colour`` and for spectrograms; e.g. a blur on a flat area), the anomaly is redrawn a few
times and, failing that, the best draw's region is additionally shifted in brightness (towards
the side with more head-room) until the minimum is reached.

Everything is drawn from the :class:`numpy.random.Generator` passed in (no global state).

Where things are: :mod:`.image` (the image kinds' registry and :func:`image_anomaly`) draws
on :mod:`.cutpaste`, :mod:`.textures` and :mod:`.ellipses` (the kinds), :mod:`.donors` and
:mod:`.placement` (where pixels come from and go to) and :mod:`.perlin` (the noise);
:mod:`.spectrogram` holds the audio kinds; :mod:`.visible` the exactness and minimum-change
rules both share; :mod:`.validation` builds the :class:`SyntheticSet`.
"""

from __future__ import annotations

from decodemo.data.anomalies.image import IMAGE_KINDS, image_anomaly
from decodemo.data.anomalies.perlin import perlin_noise
from decodemo.data.anomalies.spectrogram import AUDIO_KINDS, spectrogram_anomaly
from decodemo.data.anomalies.validation import SyntheticSet, make_validation_set

__all__ = [
    "IMAGE_KINDS",
    "AUDIO_KINDS",
    "perlin_noise",
    "image_anomaly",
    "spectrogram_anomaly",
    "SyntheticSet",
    "make_validation_set",
]
