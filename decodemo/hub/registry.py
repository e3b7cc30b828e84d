"""Names -> loaded models, each loaded once behind a lock, at most ``max_resident`` in memory."""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

from decodemo import settings
from decodemo.errors import ModelError
from decodemo.hub.devices import best_device, load_on_device
from decodemo.hub.manifest import CHECKPOINTS, Entry, MANIFEST, load_manifest
from decodemo.hub.resolve import resolve_verified


class ModelRegistry:
    """Names -> loaded models, each loaded once (one lock per name) and kept in an LRU of
    ``max_resident`` models. Thread-safe; share one per process."""

    def __init__(self, manifest: str | Path | dict[str, Entry] = MANIFEST, *, root: str | Path | None = None,
                 device: str | None = None, max_resident: int = settings.MAX_MODELS, cache_dir=None, endpoint=None) -> None:
        """``root`` (where bundled folders live) defaults to the manifest's folder."""
        self.entries = manifest if isinstance(manifest, dict) else load_manifest(manifest)
        self.root = Path(root) if root is not None else (CHECKPOINTS if isinstance(manifest, dict)
                                                         else Path(manifest).parent)
        self.device = device or best_device()
        self.max_resident = max(1, int(max_resident))
        self.cache_dir, self.endpoint = cache_dir, endpoint
        self._lock = threading.Lock()
        self._name_locks: dict[str, threading.Lock] = {}
        self._resident: OrderedDict[str, Any] = OrderedDict()
        self.load_counts: Counter[str] = Counter()
        self.sources: dict[str, str] = {}
        self._roots: dict[str, Path] = {n: self.root for n in self.entries}  # name -> folder of its files
        self.extra_manifests: list[Path] = []

    # ------------------------------------------------------------------ user registries
    def add_manifest(self, path: str | Path) -> list[str]:
        """Add the entries of another manifest (a user registry written by ``fit``), its bundled
        folders relative to its own folder. A name the registry already has from another manifest
        is kept as it was. Returns the names added; re-reading the same manifest adds what is new."""
        path = Path(path)
        if path not in self.extra_manifests:
            self.extra_manifests.append(path)
        if not path.is_file():
            return []
        added = []
        for name, entry in load_manifest(path).items():
            with self._lock:
                if name in self.entries and self._roots.get(name) != path.parent:
                    continue
                if name in self.entries and self.entries[name].sha256 != entry.sha256:
                    self._resident.pop(name, None)  # refitted: load the new weights on next use
                if name not in self.entries:
                    added.append(name)
                self.entries[name] = entry
                self._roots[name] = path.parent
        return added

    def refresh(self) -> list[str]:
        """Re-read every added manifest; returns the names that are new."""
        return [n for p in list(self.extra_manifests) for n in self.add_manifest(p)]

    def root_of(self, name: str) -> Path:
        """The folder that ``name``'s bundled path is relative to."""
        self.entry(name)
        return self._roots.get(name, self.root)

    def entry(self, name: str) -> Entry:
        try:
            return self.entries[name]
        except KeyError:
            raise ModelError(f"Unknown model {name!r}; the registry has: {', '.join(self.entries)}.") from None

    def names(self, *, modality: str | None = None, domain: str | None = None) -> list[str]:
        return [n for n, e in self.entries.items()
                if (modality is None or e.modality == modality) and (domain is None or e.domain == domain)]

    def resident(self) -> list[str]:
        with self._lock:
            return list(self._resident)

    def get(self, name: str):
        """The loaded model for ``name`` (loading it on first use)."""
        entry = self.entry(name)
        with self._lock:
            if name in self._resident:
                self._resident.move_to_end(name)
                return self._resident[name]
            lock = self._name_locks.setdefault(name, threading.Lock())
        with lock:  # one loader per name; other names load in parallel
            with self._lock:
                if name in self._resident:
                    self._resident.move_to_end(name)
                    return self._resident[name]
            folder, source, config = resolve_verified(entry, root=self.root_of(name), cache_dir=self.cache_dir,
                                                      endpoint=self.endpoint)
            model = load_on_device(folder, self.device, config=config)
            with self._lock:
                self.load_counts[name] += 1
                self.sources[name] = source
                self._resident[name] = model
                while len(self._resident) > self.max_resident:
                    self._resident.popitem(last=False)
            return model


