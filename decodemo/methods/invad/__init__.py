"""Reconstruction-free latent likelihood (InvAD), method id ``invad``."""

from decodemo.methods.invad.config import InvADConfig
from decodemo.methods.invad.model import InvAD

__all__ = ["InvAD", "InvADConfig"]
