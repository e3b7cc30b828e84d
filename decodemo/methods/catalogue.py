"""The one catalogue of methods: ids, the order the product shows them in, titles and papers.

Everything that lists methods (the app, the service, the registry, the store, the command line,
the benchmarks) reads it from here, so a method is added or renamed in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MethodInfo", "CATALOGUE", "DIFFUSION_METHODS", "DETECTORS", "MODEL_KINDS", "TITLES", "PAPERS", "info"]


@dataclass(frozen=True)
class MethodInfo:
    id: str
    title: str  # as the app shows it
    paper: str  # what a model card cites
    target: str  # "module:Class", imported lazily
    diffusion: bool = True  # False: the nearest-neighbour reference, never one of the compared methods


#: Detectors in the product's order: the three diffusion methods left to right, then the reference.
CATALOGUE: tuple[MethodInfo, ...] = (
    MethodInfo("decodiff", "DeCo-Diff",
               "Beizaee et al., Correcting Deviations from Normality: A Reformulated Diffusion Model for "
               "Multi-Class Unsupervised Anomaly Detection, CVPR 2025",
               "decodemo.methods.decodiff.model:DeCoDiff"),
    MethodInfo("recon", "Diffusion reconstruction",
               "Yi Chen, Research on Anomaly Detection Methods Based on Diffusion Models, arXiv 2505.05137 (2025)",
               "decodemo.methods.recon.model:Recon"),
    MethodInfo("invad", "Latent likelihood (InvAD)",
               "Sakai & Hasegawa, Reconstruction-Free Anomaly Detection with Diffusion Models via Direct Latent "
               "Likelihood Evaluation, arXiv 2504.05662 (2025)",
               "decodemo.methods.invad.model:InvAD"),
    MethodInfo("baseline", "Nearest-neighbour reference (not diffusion)",
               "Reference, not a diffusion method: a PatchCore-style nearest-neighbour scorer after Roth et al., "
               "Towards Total Recall in Industrial Anomaly Detection, CVPR 2022",
               "decodemo.methods.baseline.model:PatchCore", diffusion=False),
)
#: The three diffusion methods, in the order the app shows them.
DIFFUSION_METHODS: tuple[str, ...] = tuple(m.id for m in CATALOGUE if m.diffusion)
#: Every detector id (the diffusion methods, then the reference).
DETECTORS: tuple[str, ...] = tuple(m.id for m in CATALOGUE)
#: Every model-folder kind: the detectors and DeCo-Diff's latent space (a model folder, not a detector).
MODEL_KINDS: tuple[str, ...] = DETECTORS + ("vae",)
TITLES: dict[str, str] = {m.id: m.title for m in CATALOGUE}
PAPERS: dict[str, str] = {m.id: m.paper for m in CATALOGUE}


def info(method_id: str) -> MethodInfo:
    for m in CATALOGUE:
        if m.id == method_id:
            return m
    raise KeyError(method_id)
