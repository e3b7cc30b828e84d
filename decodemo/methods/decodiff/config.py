"""Configurations of DeCo-Diff (``decodiff``) and of its latent space (``vae``), saved as ``config.json``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from decodemo.errors import ModelError, UnpinnedReferenceError
from decodemo.methods.base import DiffusionConfig, ModelConfig

__all__ = ["VAEConfig", "DeCoDiffConfig", "CPU_VAE", "CPU_VAE_F4", "GPU_VAE", "check_pretrained_reference"]

_COMMIT = re.compile(r"^[0-9a-f]{40}$")

#: A small KL autoencoder that trains on two CPU cores (128 px -> 4 x 16 x 16, about 1 M parameters).
CPU_VAE: dict[str, Any] = {"block_out_channels": [16, 32, 64, 64], "layers_per_block": 1, "latent_channels": 4,
                           "norm_num_groups": 8}
#: The same at downsampling factor 4 (three stages): 128 px -> 4 x 32 x 32, the paper's latent
#: grid at half its image size (``train --vae-downsampling 4``).
CPU_VAE_F4: dict[str, Any] = {"block_out_channels": [32, 64, 64], "layers_per_block": 1, "latent_channels": 4,
                              "norm_num_groups": 8}
#: A larger one for a GPU (256 px -> 4 x 32 x 32).
GPU_VAE: dict[str, Any] = {"block_out_channels": [64, 128, 256, 256], "layers_per_block": 2, "latent_channels": 4,
                           "norm_num_groups": 32}


@dataclass
class VAEConfig(ModelConfig):
    """A ``diffusers.AutoencoderKL`` trained on normal images of one or more domains.

    Latents are ``(encoder mean - latent_shift) * latent_scale``; ``latent_scale`` is set after
    training to 1 / (standard deviation of the normal training latents), as Stable
    Diffusion's 0.18215 is for its VAE. With ``pretrained`` set, the autoencoder is a Hub VAE
    (for example ``stabilityai/sd-vae-ft-mse`` at a pinned revision) and only the latent scale
    and the quality figures are computed here.
    """

    method: str = "vae"
    image_size: int = 128
    in_channels: int = 3  # 3 for RGB images, 1 for log-mel spectrograms
    block_out_channels: list[int] = field(default_factory=lambda: list(CPU_VAE["block_out_channels"]))
    layers_per_block: int = 1
    latent_channels: int = 4
    norm_num_groups: int = 8
    kl_weight: float = 1e-6
    #: Weight of a perceptual loss on frozen EfficientNet-Lite0 features (``PerceptualLoss``)
    #: added to the L1 + MSE reconstruction loss in training; 0 trains on pixels only.
    perceptual_weight: float = 0.0
    latent_scale: float = 1.0
    latent_shift: float = 0.0
    categories: list[str] = field(default_factory=list)
    quality: dict[str, Any] = field(default_factory=dict)  # e.g. PSNR on normal test images
    #: A pretrained ``AutoencoderKL`` instead of our own: a Hub repo id (or a local diffusers
    #: folder), its pinned ``revision`` and ``subfolder``. The network fields above are then
    #: copied from its config, and its weights are loaded from there (safetensors only).
    pretrained: str | None = None
    revision: str | None = None
    subfolder: str | None = None

    def __post_init__(self) -> None:
        check_pretrained_reference(self.pretrained, self.revision, self.subfolder)

    @property
    def downsampling(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    @property
    def latent_size(self) -> int:
        return self.image_size // self.downsampling


@dataclass
class DeCoDiffConfig(DiffusionConfig):
    """Everything to rebuild a DeCo-Diff model (its VAE config included) and prepare inputs."""

    method: str = "decodiff"
    categories: list[str] = field(default_factory=list)  # class-conditioning ids, in order
    vae: dict[str, Any] = field(default_factory=lambda: VAEConfig().to_dict())
    block_out_channels: list[int] = field(default_factory=lambda: [64, 128, 128])
    layers_per_block: int = 1
    attention_levels: list[int] = field(default_factory=lambda: [1, 2])  # which levels get self-attention
    norm_num_groups: int = 32
    dropout: float = 0.4
    num_train_timesteps: int = 10
    inference_timesteps: list[int] = field(default_factory=lambda: [8, 6, 4, 2, 0])
    mask_ratio_max: float = 0.7
    shuffle_ratio_max: float = 0.3
    # the paper's clip 0.4 is on images in [-1, 1]; ours are in [0, 1], where the same clip is 0.2
    pixel_clip: float = 0.2
    pixel_sigma_at_256: float = 3.0
    latent_clip: float = 0.2
    latent_sigma: float = 1.0
    fusion: str = "geometric"  # the image score is the max of this fused map
    threshold: dict[str, float] = field(default_factory=dict)  # per category

    def __post_init__(self) -> None:
        vae = self.vae if isinstance(self.vae, dict) else {}
        check_pretrained_reference(vae.get("pretrained"), vae.get("revision"), vae.get("subfolder"),
                                   where="config.vae")

    @property
    def score(self) -> str:
        """The score variant used for decisions: the max of the ``fusion`` map."""
        return self.fusion

    @property
    def image_size(self) -> int:
        return int(self.vae["image_size"])

    @property
    def latent_channels(self) -> int:
        return int(self.vae["latent_channels"])

    @property
    def latent_size(self) -> int:
        return VAEConfig(**{k: v for k, v in self.vae.items()}).latent_size


def check_pretrained_reference(pretrained: str | None, revision: str | None, subfolder: str | None, *,
                               where: str = "VAE config") -> None:
    """Refuse a pretrained VAE on the Hub that is not pinned to a commit.

    ``pretrained`` is either a local diffusers folder (an existing directory: nothing to pin) or a
    Hub repository id, which must come with ``revision``, a 40-hex commit sha: a branch or tag such
    as ``main`` can move, and the same config would then load other weights. ``subfolder`` must stay
    inside the repository. Raises :class:`UnpinnedReferenceError` (or :class:`ModelError` for a
    malformed value) naming what was given and what is accepted."""
    if not pretrained:
        return
    if not isinstance(pretrained, str):
        raise ModelError(f"{where}: pretrained must be a Hub repo id or a diffusers folder, got {pretrained!r}.")
    if subfolder is not None and (not isinstance(subfolder, str) or subfolder.startswith("/") or "\\" in subfolder
                                  or ".." in PurePosixPath(subfolder).parts):
        raise ModelError(f"{where}: subfolder {subfolder!r} must be a folder inside {pretrained!r} "
                         "(relative, no '..').")
    if Path(pretrained).is_dir():
        return  # a local diffusers folder, not a Hub reference
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(pretrained)
    except HFValidationError as exc:
        raise ModelError(f"{where}: pretrained {pretrained!r} is neither a folder here nor a Hub repo id "
                         f"('owner/name'): {' '.join(str(exc).split())}") from exc
    if not isinstance(revision, str) or not _COMMIT.match(revision):
        raise UnpinnedReferenceError(
            f"{where}: the pretrained VAE {pretrained!r} on the Hugging Face Hub must be pinned to a commit: "
            f"give revision as its 40-hex commit sha (e.g. --vae-revision), not {revision!r}; a branch or tag can "
            "move. A local diffusers folder needs no revision.")
