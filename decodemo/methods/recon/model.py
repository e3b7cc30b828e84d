"""Diffusion reconstruction with multi-scale, wavelet and semantic discrepancy (``recon``).

Paper: Yi Chen, "Research on Anomaly Detection Methods Based on Diffusion Models", arXiv
2505.05137 (2025). The paper states the ingredients (an unconditional DDPM trained on normal
data, reconstruction by reverse diffusion, an anomaly indicator that combines reconstruction
error and semantic discrepancy, multi-scale features, attention, a wavelet-domain
representation, images and audio with one method) but gives no code and does not fix the
details, so this is OUR READING (METHODS.md section 2), stated as such:

- Representation: a one-level 2-D Haar transform of the input (``wavelet.py``; 128 px RGB ->
  12 x 64 x 64), each sub-band channel standardised with normal training statistics. Audio:
  the log-mel spectrogram window is a one-channel image (4 x 64 x 64).
- Model: unconditional ``diffusers.UNet2DModel``, self-attention at the two lowest
  resolutions, epsilon prediction, T = 1000 linear betas 1e-4..0.02, MSE.
- Reconstruction: noise to ``t0`` (0.3 T by default) with seeded noise, a deterministic DDIM
  reverse of ``reverse_steps`` (5) steps to t = 0, inverse Haar transform.
- Map = ``error_weight`` x standardised multi-scale reconstruction error (|x - x_hat| at full,
  1/2 and 1/4 scale plus the per-sub-band wavelet error, upsampled and averaged) +
  ``semantic_weight`` x standardised semantic discrepancy (1 - cosine similarity of
  EfficientNet-Lite0 features of x and x_hat at strides 4, 8 and 16, upsampled and
  averaged); each part standardised with statistics of NORMAL held-out images; Gaussian
  smoothing; image score = max of the map.

Choices the paper leaves open, and why:
- Training timesteps are drawn from [0, ``train_t_max``) = [0, 500) instead of [0, 1000):
  reconstruction starts at t0 <= 0.4 T, so a CPU-sized training budget is spent where it is used.
- Map statistics are per position for images (``map_norm="position"``, a mean and std map
  from held-out normal images; objects like the bottle have edges that always reconstruct
  worse) and per frequency row for audio (``"row"``); ``"global"`` is a single mean/std.
- A small UNet (3.2 M parameters, channels 32/64/64/128) so it trains on 2 CPU cores.
- The shipped UNets are stored in float16 (``storage_dtype``) and computed in float32 (bottle
  pixel AUROC 0.7366 -> 0.7361; image and fan figures unchanged).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import UNet2DModel

from decodemo.errors import InputError, ModelError
from decodemo.features.efficientnet import LITE0_BLOCK_CHANNELS, LITE0_BLOCK_STRIDES, EfficientNetLite0Features
from decodemo.ops.maps import gaussian_blur, upsample
from decodemo.methods.base import DetectionResult, FolderModule, cast_for_storage, prefixed, unprefixed
from decodemo.methods.recon.config import SCORE_VARIANTS, ReconConfig
from decodemo.methods.recon.wavelet import haar_dwt, haar_idwt
from decodemo.methods.unet import unet2d
from decodemo.ops.ddim import add_noise, ddim_reverse

__all__ = ["Recon", "build_unet", "reverse_timesteps", "ddim_reconstruct"]

MAP_NORMS = ("position", "row", "global")
#: The deterministic DDIM reverse from t0 to t = 0 (:func:`decodemo.ops.ddim.ddim_reverse`), under its recon name.
ddim_reconstruct = ddim_reverse


def build_unet(cfg: ReconConfig) -> UNet2DModel:
    n = len(cfg.block_out_channels)  # self-attention at the two lowest resolutions
    return unet2d(sample_size=cfg.wavelet_size, channels=cfg.wavelet_channels, block_out_channels=cfg.block_out_channels,
                  layers_per_block=cfg.layers_per_block, attention_levels=[n - 2, n - 1],
                  norm_num_groups=cfg.norm_num_groups, dropout=cfg.dropout)

def reverse_timesteps(t0: int, steps: int) -> list[int]:
    """``steps`` DDIM timesteps from ``t0`` down on a uniform grid, e.g. (300, 5) -> [300, 240, 180, 120, 60]."""
    if steps < 1 or t0 < 1:
        raise ModelError(f"recon needs t0 >= 1 and at least one reverse step (t0={t0}, steps={steps}).")
    stride = t0 / steps
    return [int(round(t0 - i * stride)) for i in range(steps)]


def _cosine_distance_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 1 - F.cosine_similarity(a, b, dim=1, eps=1e-6)


class Recon(FolderModule):
    """Partial-noising DDIM reconstruction in the Haar domain, scored by reconstruction error
    and semantic discrepancy.

    ``detect(images)`` takes ``(B, 3, S, S)`` in [0, 1] (``S = config.image_size``; spectrogram
    windows are grey and are averaged to one channel when ``in_channels == 1``) and returns
    scores ``(B,)`` (max of the smoothed ``score`` map), maps ``(B, S, S)``, the error /
    semantic / combined variants (with their maps in ``extras`` as ``map_<variant>``), the
    reconstruction ``(B, 3, S, S)`` and NFE = ``reverse_steps``.
    """

    method_id = "recon"
    config_class = ReconConfig

    def __init__(self, config: ReconConfig) -> None:
        super().__init__()
        if config.map_norm not in MAP_NORMS:
            raise ModelError(f"map_norm must be one of {MAP_NORMS}, not {config.map_norm!r}.")
        if config.score not in SCORE_VARIANTS:
            raise ModelError(f"score must be one of {SCORE_VARIANTS}, not {config.score!r}.")
        if not 0 < config.t0 < config.num_train_timesteps:
            raise ModelError(f"t0 must be in 1..{config.num_train_timesteps - 1}, got {config.t0}.")
        if not 0 < config.train_t_max <= config.num_train_timesteps:
            raise ModelError(f"train_t_max must be in 1..{config.num_train_timesteps}, got {config.train_t_max}.")
        self.config = config
        self.unet = build_unet(config)
        self.register_buffer("alphas_cumprod", config.alphas_cumprod())
        c, s = config.wavelet_channels, config.image_size
        self.register_buffer("wav_mean", torch.zeros(c, 1, 1))
        self.register_buffer("wav_std", torch.ones(c, 1, 1))
        stat_shape = {"position": (s, s), "row": (s, 1), "global": (1, 1)}[config.map_norm]
        for name in ("err", "sem", "abl_err", "abl_sem"):
            self.register_buffer(f"{name}_mean", torch.zeros(stat_shape))
            self.register_buffer(f"{name}_std", torch.ones(stat_shape))
        # The no-diffusion ablation compares an input with the per-position mean of the normal
        # training inputs (image and features) instead of with a reconstruction.
        self.register_buffer("mean_image", torch.zeros(config.in_channels, s, s))
        self.set_feature_size(config.feature_size)

    def set_feature_size(self, size: int) -> None:
        """Take the semantic features at ``size`` px: the frozen EfficientNet-Lite0 is built for
        that side ("same" padding depends on it) and the ablation's mean features are emptied
        (``has_ablation`` is False until :meth:`fit_ablation_stats` runs again)."""
        device = self.alphas_cumprod.device
        self.config.feature_size = size
        self.features = EfficientNetLite0Features(self.config.feature_blocks, image_size=size).to(device)
        for k, b in enumerate(self.config.feature_blocks):
            side = -(-size // LITE0_BLOCK_STRIDES[b])
            self.register_buffer(f"mean_feat_{k}", torch.zeros(LITE0_BLOCK_CHANNELS[b], side, side, device=device))
        self.has_ablation = False

    # ---------------------------------------------------------------- representation
    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4:
            raise InputError(f"recon takes a batch (B, C, H, W), got shape {tuple(images.shape)}.")
        x = images.to(self.alphas_cumprod.device, torch.float32)
        s = self.config.image_size
        if tuple(x.shape[-2:]) != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False)
        if self.config.in_channels == 1 and x.shape[1] != 1:
            x = x.mean(1, keepdim=True)
        return x

    def to_wavelet(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, S, S)`` in [0, 1] -> standardised Haar coefficients ``(B, 4C, S/2, S/2)``."""
        return (haar_dwt(x * 2 - 1) - self.wav_mean) / self.wav_std

    def from_wavelet(self, w: torch.Tensor) -> torch.Tensor:
        return ((haar_idwt(w * self.wav_std + self.wav_mean) + 1) / 2).clamp(0, 1)

    @torch.no_grad()
    def fit_wavelet_stats(self, images: torch.Tensor, batch: int = 64) -> None:
        """Per sub-band-channel mean/std of the Haar coefficients of normal training images."""
        w = torch.cat([haar_dwt(self._prepare(images[i : i + batch]) * 2 - 1).cpu() for i in range(0, len(images), batch)])
        self.wav_mean.copy_(w.mean(dim=(0, 2, 3)).view(-1, 1, 1))
        self.wav_std.copy_(w.std(dim=(0, 2, 3)).clamp_min(1e-4).view(-1, 1, 1))

    # ---------------------------------------------------------------- training
    def forward(self, w0: torch.Tensor) -> torch.Tensor:
        return self.training_loss(w0)

    def training_loss(self, w0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Epsilon-prediction MSE on standardised wavelet coefficients ``w0`` (DDPM objective)."""
        b = w0.shape[0]
        t = torch.randint(0, self.config.train_t_max, (b,), generator=generator).to(w0.device)
        noise = torch.randn(w0.shape, generator=generator, dtype=w0.dtype).to(w0.device)
        ab = self.alphas_cumprod[t].view(b, 1, 1, 1).to(w0.dtype)
        pred = self.unet(add_noise(w0, noise, ab), t).sample
        return F.mse_loss(pred.float(), noise.float())

    # ---------------------------------------------------------------- inference
    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(B, C, S, S)`` in [0, 1] -> (reconstruction x_hat, w, w_hat)."""
        cfg = self.config
        w = self.to_wavelet(x)
        ab = self.alphas_cumprod[cfg.t0]
        dtype = next(self.unet.parameters()).dtype
        timesteps = reverse_timesteps(cfg.t0, cfg.reverse_steps)
        # n_draws seeded noise draws (the same for every input), reconstructed as one batch of
        # n_draws x B and averaged: one network call per step whatever n_draws is
        k = cfg.n_draws
        noise = torch.stack([torch.randn(w.shape[1:], generator=torch.Generator(device="cpu").manual_seed(cfg.noise_seed + i))
                             for i in range(k)]).to(w.device)
        w_t = add_noise(w.unsqueeze(0), noise.unsqueeze(1), ab)  # (K, B, C, H, W)
        rec = ddim_reverse(lambda a, t: self.unet(a.to(dtype), t).sample, w_t.flatten(0, 1), self.alphas_cumprod,
                           timesteps)
        w_hat = rec.view(k, *w.shape).mean(0).to(w.dtype)
        return self.from_wavelet(w_hat), w, w_hat

    @torch.no_grad()
    def raw_maps(self, x: torch.Tensor, x_hat: torch.Tensor, w: torch.Tensor, w_hat: torch.Tensor,
                 feats_hat: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Unstandardised (error map, semantic map), each ``(B, S, S)``. ``feats_hat`` replaces the
        features of ``x_hat`` (the ablation's mean normal features)."""
        cfg = self.config
        size = tuple(x.shape[-2:])
        errs = []
        for s in cfg.error_scales:
            a, b = (F.avg_pool2d(x, s), F.avg_pool2d(x_hat, s)) if s > 1 else (x, x_hat)
            errs.append(upsample((a - b).abs().mean(1), size))
        # per-sub-band wavelet error in the coefficients' own units ([0, 1] image scale)
        dw = ((w - w_hat) * self.wav_std).abs() / 4  # /2 for [-1, 1] -> [0, 1], /2 for the Haar gain
        dw = dw.view(dw.shape[0], -1, 4, *dw.shape[-2:]).mean(1)  # (B, 4 sub-bands, S/2, S/2)
        errs.extend(upsample(dw[:, k], size) for k in range(4))
        err = torch.stack(errs).mean(0)
        fx = self._feats(x)
        fr = feats_hat if feats_hat is not None else self._feats(x_hat)
        sem = torch.stack([upsample(_cosine_distance_map(a, b), size) for a, b in zip(fx, fr)]).mean(0)
        return err, sem

    @torch.no_grad()
    def _feats(self, x: torch.Tensor) -> list[torch.Tensor]:
        """EfficientNet-Lite0 features of ``(B, C, S, S)`` inputs at ``feature_size`` (grey -> RGB)."""
        fs = self.config.feature_size
        x = F.interpolate(x, size=(fs, fs), mode="bilinear", align_corners=False)
        return self.features(x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x)

    @staticmethod
    def _set_stats(mean_buf: torch.Tensor, std_buf: torch.Tensor, maps: torch.Tensor, map_norm: str) -> None:
        dims = {"position": (0,), "row": (0, 2), "global": (0, 1, 2)}[map_norm]
        mean = maps.mean(dim=dims, keepdim=True)[0]
        std = maps.std(dim=dims, keepdim=True)[0] if len(maps) > 1 else torch.ones_like(mean)
        std = torch.maximum(std, 0.1 * maps.std().clamp_min(1e-8))
        mean_buf.copy_(mean.expand_as(mean_buf))
        std_buf.copy_(std.expand_as(std_buf))

    @torch.no_grad()
    def fit_map_stats(self, images: torch.Tensor, batch: int = 16) -> None:
        """Mean/std of the error and semantic maps of NORMAL images (per ``map_norm``). A std
        below 0.1 x the overall std is floored, so a quiet position cannot explode."""
        errs, sems = [], []
        for i in range(0, len(images), batch):
            x = self._prepare(images[i : i + batch])
            x_hat, w, w_hat = self.reconstruct(x)
            e, s = self.raw_maps(x, x_hat, w, w_hat)
            errs.append(e.cpu())
            sems.append(s.cpu())
        for name, maps in (("err", torch.cat(errs)), ("sem", torch.cat(sems))):
            self._set_stats(getattr(self, f"{name}_mean"), getattr(self, f"{name}_std"), maps, self.config.map_norm)

    # ---------------------------------------------------------------- the no-diffusion ablation
    def _ablation_reference(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """The mean normal input in place of a reconstruction: (x_hat, w_hat, features of x_hat)."""
        b = x.shape[0]
        x_hat = self.mean_image.unsqueeze(0).expand(b, -1, -1, -1)
        feats = [getattr(self, f"mean_feat_{k}").unsqueeze(0).expand(b, -1, -1, -1)
                 for k in range(len(self.config.feature_blocks))]
        return x_hat, self.to_wavelet(x_hat), feats

    @torch.no_grad()
    def fit_ablation_stats(self, images: torch.Tensor, batch: int = 16) -> None:
        """The no-diffusion ablation's statistics from NORMAL training inputs: the per-position
        mean image and mean features, then mean/std of the error and semantic maps against them."""
        xs, feats = [], None
        for i in range(0, len(images), batch):
            x = self._prepare(images[i : i + batch])
            xs.append(x.sum(0))
            f = [t.sum(0) for t in self._feats(x)]
            feats = f if feats is None else [a + b for a, b in zip(feats, f)]
        n = len(images)
        self.mean_image.copy_(torch.stack(xs).sum(0) / n)
        for k, f in enumerate(feats):
            getattr(self, f"mean_feat_{k}").copy_(f / n)
        errs, sems = [], []
        for i in range(0, len(images), batch):
            x = self._prepare(images[i : i + batch])
            e, s = self._ablation_raw(x)
            errs.append(e.cpu())
            sems.append(s.cpu())
        for name, maps in (("abl_err", torch.cat(errs)), ("abl_sem", torch.cat(sems))):
            self._set_stats(getattr(self, f"{name}_mean"), getattr(self, f"{name}_std"), maps, self.config.map_norm)
        self.has_ablation = True

    def _ablation_raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_hat, w_hat, feats = self._ablation_reference(x)
        return self.raw_maps(x, x_hat, self.to_wavelet(x), w_hat, feats_hat=feats)

    @torch.no_grad()
    def detect_ablation(self, images: torch.Tensor, *, category: str | None = None) -> DetectionResult:
        """The no-diffusion counterpart through the same code path: the maps compare the input
        with the per-position mean of the normal training inputs (image and features) instead of
        the diffusion reconstruction; same standardisation (its own normal statistics), blur and score."""
        if not self.has_ablation:
            raise ModelError("This recon model has no statistics for the no-diffusion ablation; run "
                             "`python -m decodemo calibrate --model DIR --data DIR` on its training data.")
        x = self._prepare(images)
        err, sem = self._ablation_raw(x)
        return self._result(images, x, err, sem, prefix="abl_", x_hat=self._ablation_reference(x)[0], nfe=0)

    def _score(self, maps: torch.Tensor) -> torch.Tensor:
        flat = maps.flatten(1)
        if self.config.score_reduce == "top1":
            k = max(1, flat.shape[1] // 100)
            return flat.topk(k, dim=1).values.mean(1)
        return flat.amax(1)

    @torch.no_grad()
    def detect(self, images: torch.Tensor, *, category: str | None = None) -> DetectionResult:
        """Score ``images``; ``category`` is accepted for the shared contract (one model, one category)."""
        x = self._prepare(images)
        x_hat, w, w_hat = self.reconstruct(x)
        err, sem = self.raw_maps(x, x_hat, w, w_hat)
        return self._result(images, x, err, sem, prefix="", x_hat=x_hat,
                            nfe=self.config.reverse_steps * self.config.n_draws)  # network calls per input

    def _result(self, images: torch.Tensor, x: torch.Tensor, err: torch.Tensor, sem: torch.Tensor, *,
                prefix: str, x_hat: torch.Tensor, nfe: int) -> DetectionResult:
        cfg = self.config
        z_err = (err - getattr(self, f"{prefix}err_mean")) / getattr(self, f"{prefix}err_std")
        z_sem = (sem - getattr(self, f"{prefix}sem_mean")) / getattr(self, f"{prefix}sem_std")
        sigma = cfg.map_blur_sigma_at_256 * cfg.image_size / 256
        maps = {
            "error": gaussian_blur(z_err, sigma),
            "semantic": gaussian_blur(z_sem, sigma),
            "combined": gaussian_blur(cfg.error_weight * z_err + cfg.semantic_weight * z_sem, sigma),
        }
        out_size = tuple(images.shape[-2:])
        if out_size != tuple(x.shape[-2:]):
            maps = {k: upsample(v, out_size) for k, v in maps.items()}
        variants = {k: self._score(v) for k, v in maps.items()}
        rec = x_hat.expand(-1, 3, -1, -1) if x_hat.shape[1] == 1 else x_hat
        return DetectionResult(
            scores=variants[cfg.score],
            maps=maps[cfg.score],
            nfe=nfe,
            variants=variants,
            reconstruction=rec,
            extras={"error_map": err, "semantic_map": sem,
                    **{f"map_{k}": v for k, v in maps.items() if k != cfg.score}},
        )

    # ---------------------------------------------------------------- folders
    def _stat_names(self) -> list[str]:
        return ["wav_mean", "wav_std", "err_mean", "err_std", "sem_mean", "sem_std"]

    def _ablation_names(self) -> list[str]:
        return (["abl_err_mean", "abl_err_std", "abl_sem_mean", "abl_sem_std", "mean_image"]
                + [f"mean_feat_{k}" for k in range(len(self.config.feature_blocks))])

    def folder_tensors(self) -> dict[str, torch.Tensor]:
        """The UNet and the normal statistics (the frozen EfficientNet-Lite0 comes from its pip wheel)."""
        tensors = prefixed("unet.", cast_for_storage(self.unet.state_dict(), self.config.storage_dtype))
        tensors.update({k: getattr(self, k) for k in self._stat_names()})
        if self.has_ablation:
            tensors.update({k: getattr(self, k) for k in self._ablation_names()})
        return tensors

    def load_folder_tensors(self, tensors: dict[str, torch.Tensor], where: str) -> None:
        self.unet.load_state_dict(unprefixed("unet.", tensors), strict=True)
        for k in self._stat_names():
            getattr(self, k).copy_(tensors[k])
        if all(k in tensors for k in self._ablation_names()):  # older folders lack the ablation
            for k in self._ablation_names():
                getattr(self, k).copy_(tensors[k])
            self.has_ablation = True
