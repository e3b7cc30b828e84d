"""Helpers that several commands share."""

from __future__ import annotations

from pathlib import Path

from decodemo.errors import DecodemoError


def load_cli_model(spec, device: str, category: str | None = None):
    """A model folder path, or a registry name (``bottle/invad``) -> (model, category)."""
    from decodemo.methods import load_model

    path = Path(spec)
    if path.is_dir():
        return load_model(path, device=device), category
    from decodemo.hub import MANIFEST, load_on_device, load_manifest, resolve

    entries = load_manifest(MANIFEST) if MANIFEST.is_file() else {}
    if str(spec) not in entries:
        raise DecodemoError(f"{spec} is neither a model folder nor a registry name "
                            f"({', '.join(entries) or 'the registry is empty'}).")
    entry = entries[str(spec)]
    folder, _ = resolve(entry)
    return load_on_device(folder, device), category or entry.class_id
