"""PatchCore-style nearest-neighbour reference (not a diffusion method), method id ``baseline``."""

from decodemo.methods.baseline.config import BaselineConfig
from decodemo.methods.baseline.model import PatchCore

__all__ = ["PatchCore", "BaselineConfig"]
