"""Names -> loaded models, each loaded once behind a lock, at most ``max_resident`` in memory; the
entries that cannot be served (broken in the manifest, or refused at warm-up) listed with why."""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

from decodemo import settings
from decodemo.errors import ModelError
from decodemo.hub.devices import best_device, load_on_device
from decodemo.hub.manifest import CHECKPOINTS, Entry, MANIFEST, ModelUnavailableError, load_manifest
from decodemo.hub.resolve import resolve_verified


class ModelRegistry:
    """Names -> loaded models, each loaded once (one lock per name) and kept in an LRU of
    ``max_resident`` models. Thread-safe; share one per process.

    A manifest is read leniently (:func:`load_manifest` with ``broken``): an entry that does not
    validate is left out and listed in :attr:`unavailable` (name -> one-line reason), so one bad
    entry never takes the others down. :meth:`mark_unavailable` moves there an entry whose weights
    could not be resolved or verified at warm-up. ``entries`` is replaced, never changed in place,
    when an entry is added or moved, so iterating over it while another thread does so is safe."""

    def __init__(self, manifest: str | Path | dict[str, Entry] = MANIFEST, *, root: str | Path | None = None,
                 device: str | None = None, max_resident: int = settings.MAX_MODELS, cache_dir=None, endpoint=None) -> None:
        """``root`` (where bundled folders live) defaults to the manifest's folder."""
        #: name -> one-line reason, for manifest entries that cannot be served
        self.unavailable: dict[str, str] = {}
        self.entries = manifest if isinstance(manifest, dict) else load_manifest(manifest, broken=self.unavailable)
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
        # name -> folder of its files (a broken entry's name stays this manifest's: no other takes it)
        self._roots: dict[str, Path] = {n: self.root for n in [*self.entries, *self.unavailable]}
        self.extra_manifests: list[Path] = []
        self._marked: dict[str, Entry] = {}  # entries refused at warm-up, kept out until they change

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
        broken: dict[str, str] = {}
        loaded = load_manifest(path, broken=broken)
        added = []
        with self._lock:
            entries = dict(self.entries)
            for name, reason in broken.items():
                if self._roots.get(name, path.parent) == path.parent:  # not a name of another manifest
                    self._drop(entries, name)
                    self.unavailable[name] = reason
                    self._roots[name] = path.parent
            for name, entry in loaded.items():
                if self._roots.get(name, path.parent) != path.parent:
                    continue  # another manifest's name (served or broken there) is kept as it was
                if self._marked.get(name) == entry:
                    continue  # refused at warm-up and unchanged since
                if name in entries and _weights(entries[name]) != _weights(entry):
                    self._resident.pop(name, None)  # refitted: load the new weights on next use
                if name not in entries:
                    added.append(name)
                entries[name] = entry
                self._roots[name] = path.parent
                self.unavailable.pop(name, None)
                self._marked.pop(name, None)
            self.entries = entries
        return added

    def mark_unavailable(self, name: str, reason: str) -> None:
        """Move ``name`` out of :attr:`entries` into :attr:`unavailable` with ``reason`` (one line):
        for an entry whose weights could not be resolved or verified at warm-up. It stays out
        until a re-read manifest (:meth:`refresh`) brings a changed entry under that name. Marking
        a name that is unavailable already keeps its first reason (two requests may fail at once)."""
        with self._lock:
            if name in self.unavailable and name not in self.entries:
                return
            if name not in self.entries:
                raise ModelError(f"Unknown model {name!r}; the registry has: {', '.join(self.entries)}.")
            entries = dict(self.entries)
            self._marked[name] = entries[name]
            self._drop(entries, name)
            self.unavailable[name] = " ".join(str(reason).split())
            self.entries = entries

    def _drop(self, entries: dict[str, Entry], name: str) -> None:
        """Remove ``name`` from ``entries`` and from memory (the caller holds the lock)."""
        entries.pop(name, None)
        self._resident.pop(name, None)
        self.sources.pop(name, None)

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
            reason = self.unavailable.get(name)
            if reason is not None:
                raise ModelUnavailableError(f"{name} is unavailable: {reason}") from None
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
                if self.entries.get(name) is entry:  # not marked unavailable or refitted meanwhile
                    self.sources[name] = source
                    self._resident[name] = model
                while len(self._resident) > self.max_resident:
                    self._resident.popitem(last=False)
            return model


def _weights(entry: Entry) -> tuple:
    """What a loaded model depends on: the pinned files (or, for an earlier manifest, the weights)."""
    return entry.sha256, tuple(sorted(entry.files.items()))
