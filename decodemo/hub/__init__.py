"""The model registry (the ``hub`` layer): a model is a name (``bottle/invad``, ``fan/recon``, ...) that resolves to
pinned, verified weights, loaded once onto the best device and shared by every request.

The manifest (``checkpoints/registry.json``) lists, per entry: the method, modality, domain and
class id; an optional bundled folder under ``checkpoints/``; an optional Hugging Face Hub source
(``repo_id``, ``revision`` pinned to a commit, ``subfolder`` inside the repository); the SHA-256
of every file of its folder (``files``) and of the weights (``sha256``); the
decision threshold and how it was chosen; the evaluation figures; the input settings; the
training data and its licence. A ``domains`` section pins the files of each in-domain reference
folder. It is validated on load, and a broken entry is named with the field at fault; the
registry serves the others and lists it in ``ModelRegistry.unavailable``.

Resolution order: the bundled folder -> the local Hugging Face cache -> a download with
``huggingface_hub.snapshot_download(revision=..., allow_patterns=...)``. With
``HF_HUB_OFFLINE=1`` or without a network the bundled models keep working; an entry that can
only come from the Hub says so (:class:`ModelUnavailableError`) and the others are unaffected.
Only the pinned files are fetched; every one is verified before a model loads, and a bundled
folder with a file the manifest does not pin, a pickle file or a symbolic link is refused.

Device: CUDA when present (the diffusion UNet in half precision, the frozen feature extractor and
VAE in float32), otherwise CPU; ``DECODEMO_DEVICE`` overrides (``cpu``, ``cuda``, ``cuda:1``).
Models load lazily, once per name behind a lock, and at most ``max_resident`` stay in memory
(least recently used first out).
"""

from __future__ import annotations

from decodemo.hub.cards import entry_from_folder, model_card, push, selection_section
from decodemo.hub.devices import best_device, gpu_task, load_on_device
from decodemo.hub.manifest import (CHECKPOINTS, DOMAIN_FOLDER, MANIFEST, METHODS, WEIGHT_FILES, Entry, HubSource,
                                   ModelUnavailableError, RegistryError, file_sha256, folder_files, load_domains,
                                   load_manifest, pin_domain, save_manifest)
from decodemo.hub.registry import ModelRegistry
from decodemo.hub.resolve import resolve, verified_config, verify, where

__all__ = ["CHECKPOINTS", "MANIFEST", "METHODS", "WEIGHT_FILES", "RegistryError", "ModelUnavailableError", "HubSource",
           "Entry", "load_manifest", "save_manifest", "file_sha256", "folder_files", "load_domains", "pin_domain",
           "DOMAIN_FOLDER", "resolve", "verify", "verified_config", "where", "best_device",
           "load_on_device", "gpu_task", "ModelRegistry", "entry_from_folder", "selection_section", "model_card",
           "push"]
