"""A PatchCore-style nearest-neighbour reference detector (method id ``baseline``).

Paper: K. Roth, L. Pemula, J. Zepeda, B. Schölkopf, T. Brox and P. Gehler, "Towards Total
Recall in Industrial Anomaly Detection", CVPR 2022 (PatchCore). This is our own
implementation of its recipe, not the authors' code. See ``decodemo/methods/baseline/README.md``.

It is a reference, NOT a diffusion method: there is no network to train and no diffusion model
(NFE 0). Normal training images give a memory bank of frozen backbone patch features, reduced
to a greedy (k-center) coreset; a test patch's anomaly value is the Euclidean distance to its
nearest memory vector and the image score is the largest patch value.

What is kept: mid-level features (strides 8 and 16, as layer2 + layer3 of the paper) averaged
over a 3 x 3 neighbourhood and brought to one grid; the greedy coreset chosen with distances in
a Johnson-Lindenstrauss random projection (128 dimensions), storing the original vectors;
nearest-neighbour distance as the patch score, its maximum as the image score; the map
upsampled bilinearly and smoothed with a Gaussian.

Deviations: EfficientNet-Lite0 blocks 4 and 10 (152 channels) instead of WideResNet-50
layer2/layer3 (no projection of the features to 1024 dimensions either); no re-weighting of
the image score by the density of the nearest memory vector's neighbourhood; the coreset is
capped at ``coreset_max`` vectors; the neighbourhood average ignores positions outside the map.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from decodemo.errors import ModelError
from decodemo.features.efficientnet import EfficientNetLite0Features
from decodemo.ops.maps import gaussian_blur, upsample
from decodemo.methods.base import DetectionResult, FolderModule
from decodemo.methods.baseline.config import BaselineConfig

__all__ = ["PatchCore", "greedy_coreset", "nearest_distances"]

# Work-size budgets, in float32 elements, for the chunked distance computations.
_TILE = 1 << 22  # 16 MB per (rows x centres) distance tile
_CANDIDATES = 4096  # points whose exact min-distance is kept between full updates


@torch.no_grad()
def greedy_coreset(points: torch.Tensor, k: int, *, start: int = 0, progress: bool = False,
                   desc: str = "coreset") -> torch.Tensor:
    """Greedy k-center selection of ``k`` rows of ``points`` ``(n, d)``; returns their indices.

    Starting from row ``start``, each step adds the row farthest (Euclidean) from the rows
    chosen so far, as in PatchCore. The result is that of the plain algorithm, which keeps a
    running min-distance vector and updates it with every new centre (O(n d) per step, bound
    by memory bandwidth: ~10 ms per step for 200k x 128 on one CPU core). Here the update is
    deferred: only the ``_CANDIDATES`` rows with the largest min-distance are updated at every
    step; the others' stored values stay upper bounds of their true values. As long as the best
    candidate's exact value is at least the largest stored value outside the candidates, it is
    the true farthest row. When it is not, all pending centres are applied to every row at once
    (one matrix product, compute bound) and the candidates are drawn again. Distances are in
    float32; a chosen row is never chosen again (no duplicates even among equal vectors).
    """
    x = points.float().contiguous()
    n = x.shape[0]
    k = int(min(k, n))
    if k <= 0:
        return torch.zeros(0, dtype=torch.long, device=x.device)
    if not 0 <= start < n:
        raise ValueError(f"start must be in 0..{n - 1}, got {start}.")
    sq = (x * x).sum(1)
    min_d = torch.full((n,), float("inf"), device=x.device)
    chosen = torch.empty(k, dtype=torch.long, device=x.device)
    chosen[0] = start
    n_chosen, pending_from = 1, 0  # chosen[pending_from:n_chosen] not yet applied to every row

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=k, desc=desc, leave=False, dynamic_ncols=True)
        bar.update(1)

    def apply_pending() -> None:
        centres = chosen[pending_from:n_chosen]
        c, c_sq = x[centres], sq[centres]
        rows = max(1, _TILE // len(centres))
        for i in range(0, n, rows):
            # ||x_i||^2 is the same along a row: add it after the min over the centres
            d = torch.addmm(c_sq[None], x[i : i + rows], c.T, alpha=-2.0).amin(1)
            torch.minimum(min_d[i : i + rows], d.add_(sq[i : i + rows]).clamp_min_(0.0), out=min_d[i : i + rows])
        min_d[centres] = -1.0  # chosen rows are never chosen again

    m = min(_CANDIDATES, n)
    while n_chosen < k:
        apply_pending()
        pending_from = n_chosen
        vals, cand = torch.topk(min_d, min(m + 1, n))
        # every row outside the candidates has (an upper bound of) its min-distance <= tau
        tau = float(vals[m]) if n > m else -math.inf
        cand, cand_d = cand[:m], vals[:m].clone()
        xc, sqc = x[cand], sq[cand]
        while n_chosen < k:
            j = int(torch.argmax(cand_d))
            if float(cand_d[j]) < tau or float(cand_d[j]) < 0:
                break  # the farthest row may be outside the candidates: update everything
            idx = cand[j]
            chosen[n_chosen] = idx
            n_chosen += 1
            d = torch.addmv(sqc + sq[idx], xc, x[idx], alpha=-2.0).clamp_min_(0.0)
            torch.minimum(cand_d, d, out=cand_d)
            cand_d[j] = -1.0
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return chosen


@torch.no_grad()
def nearest_distances(queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """Euclidean distance of each row of ``queries`` ``(q, C)`` to its nearest row of
    ``memory`` ``(M, C)``, in float32, chunked so no more than ~16 MB of distances are held."""
    q, mem = queries.float(), memory.float()
    mem_sq = (mem * mem).sum(1)
    out = torch.empty(q.shape[0], device=q.device)
    rows = max(1, _TILE // max(1, mem.shape[0]))
    for i in range(0, q.shape[0], rows):
        block = q[i : i + rows]
        d = torch.addmm(mem_sq[None], block, mem.T, alpha=-2.0).amin(1)
        out[i : i + rows] = d.add_((block * block).sum(1)).clamp_min_(0.0).sqrt_()
    return out


class PatchCore(FolderModule):
    """Nearest-neighbour distance to a coreset memory bank of normal patch features.

    ``detect(images)`` takes ``(B, 3, H, W)`` RGB in [0, 1] (resized to ``config.image_size``
    for the backbone) and returns a :class:`DetectionResult` with scores ``(B,)`` (the largest
    patch distance), maps ``(B, H, W)``, ``nfe=0``, the ``"nn"`` variant and the
    ``grid x grid`` patch distances in ``extras["patch_distance"]``.
    """

    method_id = "baseline"
    config_class = BaselineConfig

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__()
        self.config = config
        self.features = EfficientNetLite0Features(config.feature_blocks, image_size=config.image_size)
        self.register_buffer("memory", torch.zeros(0, config.feature_channels))

    @property
    def fitted(self) -> bool:
        return self.memory.shape[0] > 0

    # ---------------------------------------------------------------- features
    @torch.no_grad()
    def patch_features(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in [0, 1] -> patch features ``(B, C, grid, grid)`` (float32)."""
        cfg = self.config
        x = images.to(self.memory.device, torch.float32)
        if tuple(x.shape[-2:]) != (cfg.image_size, cfg.image_size):
            x = F.interpolate(x, size=(cfg.image_size, cfg.image_size), mode="bilinear", align_corners=False,
                              antialias=True).clamp_(0.0, 1.0)
        maps = []
        for f in self.features(x):
            if cfg.local_pool > 1:
                f = F.avg_pool2d(f, cfg.local_pool, stride=1, padding=cfg.local_pool // 2, count_include_pad=False)
            if f.shape[-1] > cfg.grid:
                f = F.adaptive_avg_pool2d(f, cfg.grid)
            elif f.shape[-1] < cfg.grid:
                f = F.interpolate(f, size=(cfg.grid, cfg.grid), mode="bilinear", align_corners=False)
            maps.append(f)
        return torch.cat(maps, dim=1).float()

    # ---------------------------------------------------------------- fitting
    @torch.no_grad()
    def fit(self, features: torch.Tensor, *, generator: torch.Generator | None = None,
            progress: bool = True) -> torch.Tensor:
        """Fill the memory bank from normal patch features ``(N, C, g, g)``; returns the chosen
        patch indices (into the ``N * g * g`` patch vectors, image-major).

        ``generator`` (CPU; default: seeded with ``config.seed``) draws the coreset's random
        start and the Gaussian projection. The memory holds the original vectors, rounded to
        ``storage_dtype`` right away so that the fitted model scores exactly as its saved folder.
        """
        cfg = self.config
        if features.ndim != 4 or features.shape[1] != cfg.feature_channels:
            raise ModelError(f"fit expects features (N, {cfg.feature_channels}, g, g), got {tuple(features.shape)}.")
        device = self.memory.device
        patches = features.to(device, torch.float32).permute(0, 2, 3, 1).reshape(-1, features.shape[1])
        n = patches.shape[0]
        if n == 0:
            raise ModelError("fit needs at least one normal patch feature.")
        if not torch.isfinite(patches).all():
            raise ModelError("fit: the training features contain NaN or infinite values.")
        gen = generator if generator is not None else torch.Generator().manual_seed(cfg.seed)
        start = int(torch.randint(n, (1,), generator=gen))
        c = patches.shape[1]
        if 0 < cfg.projection_dim < c:
            proj = torch.randn(c, cfg.projection_dim, generator=gen) / math.sqrt(cfg.projection_dim)
            points = patches @ proj.to(device)
        else:
            points = patches
        idx = greedy_coreset(points, cfg.coreset_size(n), start=start, progress=progress, desc="baseline coreset")
        memory = patches[idx].to(getattr(torch, cfg.storage_dtype)).float()
        if not torch.isfinite(memory).all():
            raise ModelError(f"The memory bank does not fit in {cfg.storage_dtype}; use storage_dtype='float32'.")
        self.memory = memory.contiguous()
        return idx

    # ---------------------------------------------------------------- inference
    @torch.no_grad()
    def patch_distances(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> nearest-memory distance of every patch ``(B, grid, grid)``."""
        if not self.fitted:
            raise ModelError("This baseline model has an empty memory bank: fit it on normal features first.")
        feats = self.patch_features(images)
        b, c, g, _ = feats.shape
        q = feats.permute(0, 2, 3, 1).reshape(-1, c)
        return nearest_distances(q, self.memory).view(b, g, g)

    @torch.no_grad()
    def detect(self, images: torch.Tensor, *, category: str | None = None) -> DetectionResult:
        """Score ``images``; ``category`` is accepted for the shared contract (one model, one
        category). The image score is the largest UNBLURRED patch distance."""
        grid = self.patch_distances(images)
        size = tuple(images.shape[-2:])
        sigma = self.config.map_blur_sigma * size[0] / self.config.image_size
        maps = gaussian_blur(upsample(grid, size), sigma)
        scores = grid.flatten(1).amax(1)
        return DetectionResult(scores=scores, maps=maps, nfe=0, variants={"nn": scores},
                               extras={"patch_distance": grid})

    # ---------------------------------------------------------------- folders
    def folder_tensors(self) -> dict[str, torch.Tensor]:
        """The memory bank in ``storage_dtype`` (not the frozen backbone)."""
        return {"memory": self.memory.to(getattr(torch, self.config.storage_dtype))}

    def load_folder_tensors(self, tensors: dict[str, torch.Tensor], where: str) -> None:
        """Exactly one finite ``(M, C)`` float tensor ``memory``."""
        cfg = self.config
        memory = tensors.get("memory")
        extra = sorted(set(tensors) - {"memory"})
        if memory is None or extra:
            raise ModelError(f"{where}: weights must hold exactly one tensor 'memory', found {sorted(tensors)}.")
        if (memory.ndim != 2 or memory.shape[1] != cfg.feature_channels or memory.shape[0] == 0
                or not memory.is_floating_point()):
            raise ModelError(f"{where}: 'memory' must be a non-empty float (M, {cfg.feature_channels}) tensor, "
                             f"got {memory.dtype} {tuple(memory.shape)}.")
        memory = memory.float()
        if not torch.isfinite(memory).all():
            raise ModelError(f"{where}: the memory bank holds NaN or infinite values.")
        self.memory = memory.contiguous()
