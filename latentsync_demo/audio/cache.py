"""Content-addressed cache for whisper features, so re-running with the same audio is instant.

Keys are sha256(model fingerprint + waveform samples): the same audio under the same encoder weights and compute
dtype gives the same key, whatever the file name. Entries live in a small in-memory LRU and, optionally, as
`<key>.safetensors` files in a directory (survives restarts; safe to delete at any time).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file


class FeatureCache:
    """LRU of `max_entries` feature tensors in memory, plus an optional on-disk `directory`. Thread-safe."""

    def __init__(self, max_entries: int = 4, directory: str | os.PathLike | None = None):
        self.max_entries = max_entries
        self.directory = Path(directory) if directory is not None else None
        self._memory: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(waveform: np.ndarray, fingerprint: str) -> str:
        """Hex sha256 of the model fingerprint and the float32 little-endian samples."""
        samples = np.ascontiguousarray(waveform, dtype="<f4")
        h = hashlib.sha256()
        h.update(f"{fingerprint}|{samples.shape[0]}|".encode())
        h.update(memoryview(samples).cast("B"))
        return h.hexdigest()

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{key}.safetensors"

    def get(self, key: str) -> torch.Tensor | None:
        """The cached features (a copy, so callers may modify it) or None."""
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                return self._memory[key].clone()
        if self.directory is None or not self._path(key).is_file():
            return None
        try:
            features = load_file(self._path(key))["features"]
        except Exception:  # unreadable/partial file (e.g. disk full earlier): drop it and recompute
            self._path(key).unlink(missing_ok=True)
            return None
        self._remember(key, features)
        return features.clone()

    def put(self, key: str, features: torch.Tensor) -> None:
        """Store a CPU tensor in memory and, if a directory is set, on disk (atomically, via rename)."""
        features = features.detach().to("cpu").contiguous().clone()
        self._remember(key, features)
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        os.close(fd)
        try:
            save_file({"features": features}, tmp, metadata={"format": "latentsync_demo whisper features v1"})
            os.replace(tmp, self._path(key))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _remember(self, key: str, features: torch.Tensor) -> None:
        with self._lock:
            self._memory[key] = features
            self._memory.move_to_end(key)
            while len(self._memory) > max(self.max_entries, 0):
                self._memory.popitem(last=False)

    def clear(self) -> None:
        """Forget the in-memory entries (files on disk are kept)."""
        with self._lock:
            self._memory.clear()

    def __len__(self) -> int:
        return len(self._memory)
