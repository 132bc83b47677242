"""Images that stay in host memory (or on disk, memory-mapped) and are gathered batch by batch.

`HostImages` is the training split of `data.placement = "stream"`: a list of uint8 (N_i, C, H,
W) numpy arrays (the image-folder cache's memory-mapped shards, or one in-memory array for the
built-in datasets) seen as one (N, C, H, W) array. `gather` reads any set of rows with one
numpy fancy-indexing call per shard (never a per-image Python loop); the stream loader calls it
from its background thread. The few consumers that need the whole split at once (a buffer init
fitted on data, reference statistics) call `.to(device)` or slice it, as they would a tensor.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


class HostImages:
    """uint8 images (N, C, H, W) in host memory or memory-mapped shards; tensor-like where needed."""

    dtype = torch.uint8
    device = torch.device("cpu")

    def __init__(self, shards: Sequence[np.ndarray], rows: np.ndarray | None = None) -> None:
        """`rows` (optional): the split is these rows of the shards, in this order (a held-out
        validation split taken out of a memory-mapped training set without copying it)."""
        if not shards:
            raise ValueError("HostImages needs at least one shard")
        shape = shards[0].shape[1:]
        for s in shards:
            if s.dtype != np.uint8 or s.ndim != 4 or s.shape[1:] != shape:
                raise ValueError(f"shards must be uint8 (N, C, H, W) of one image shape; got "
                                 f"{s.dtype} {s.shape} beside {shape}")
        self.shards = list(shards)
        self._ends = np.cumsum([len(s) for s in self.shards])
        self._starts = self._ends - np.array([len(s) for s in self.shards])
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        n = int(self._ends[-1]) if self.rows is None else len(self.rows)
        self.shape = torch.Size((n, *(int(v) for v in shape)))

    def __len__(self) -> int:
        return int(self.shape[0])

    def dim(self) -> int:
        return 4

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape))

    def gather(self, indices: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Rows `indices` (any order, repeats allowed) as one (len(indices), C, H, W) uint8 array.

        Indices are sorted so each shard is read in file order (memory-mapped pages are touched
        once, front to back), then written back in the asked order: one fancy-indexing call per
        shard hit.
        """
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"image index out of range 0..{len(self) - 1}")
        if out is None:
            out = np.empty((len(indices), *self.shape[1:]), dtype=np.uint8)
        if self.rows is not None:
            indices = self.rows[indices]
        order = np.argsort(indices, kind="stable")
        sorted_idx = indices[order]
        shard_of = np.searchsorted(self._ends, sorted_idx, side="right")
        bounds = np.searchsorted(shard_of, np.arange(len(self.shards) + 1))
        for s in range(len(self.shards)):
            lo, hi = bounds[s], bounds[s + 1]
            if lo == hi:
                continue
            out[order[lo:hi]] = self.shards[s][sorted_idx[lo:hi] - self._starts[s]]
        return out

    def numpy(self) -> np.ndarray:
        """The whole split as one in-memory array (reads every shard)."""
        if self.rows is not None:
            return self.gather(np.arange(len(self)))
        return np.concatenate([np.asarray(s) for s in self.shards]) if len(self.shards) > 1 \
            else np.array(self.shards[0])

    def __getitem__(self, key) -> torch.Tensor:
        """A CPU uint8 tensor of the selected rows (a slice, an index array or tensor, an int)."""
        if isinstance(key, slice):
            rows = np.arange(len(self))[key]
        elif isinstance(key, int):
            return self[key:key + 1][0] if key >= 0 else self[len(self) + key]
        else:
            rows = key.cpu().numpy() if isinstance(key, torch.Tensor) else np.asarray(key)
        return torch.from_numpy(self.gather(rows))

    def to(self, device=None, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Every image as one tensor on `device` (what a consumer of the whole split needs)."""
        x = torch.from_numpy(self.numpy())
        return x.to(device=device, dtype=dtype) if dtype is not None else x.to(device)


__all__ = ["HostImages"]
