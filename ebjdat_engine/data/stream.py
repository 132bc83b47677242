"""Training batches streamed from host memory (or memory-mapped shards) to the device.

`StreamLoader` is the `data.placement = "stream"` twin of `DeviceLoader`: the same permutation
(a CPU `randperm` seeded from (seed, epoch)) and the same batched on-device augmentation, so a
batch is still a pure function of (seed, epoch, index) and resume is exact with no loader state.

A background thread runs ahead of the training loop by `prefetch` batches: it gathers the
batch's rows from the shards (one numpy fancy-index per shard), and on a GPU copies them into
one of a ring of pinned host buffers and issues the host-to-device copy on its own CUDA stream,
recording an event. The training thread only makes its stream wait on that event (no host sync)
and then augments on the device, so reading and copying overlap the previous steps' compute.
Under torchrun each rank reads only its share of every global batch (`rank`, `world`), and its
augmentation draws are that share of the whole batch's draws.

`wait_seconds` adds up the time the training thread spent blocked waiting for a batch that was
not ready yet: the data stall that `benchmarks/data_stream.py` reports.
"""

from __future__ import annotations

import queue
import threading
import time

import numpy as np
import torch

from .augment import derive_seed
from .loader import _PERM_STREAM, BatchPlan
from .registry import ImageSplit
from .sources import DataError

_STOP = object()


class StreamLoader(BatchPlan):
    """Shuffled, augmented batches read from a host split in the background; see the module doc."""

    #: under torchrun each batch is already this rank's share
    rank_share = True

    def __init__(self, split: ImageSplit, batch_size: int, *, seed: int, device: torch.device,
                 crop_padding: int = 0, hflip: bool = False, noise_std: float = 0.0,
                 rank: int = 0, world: int = 1, prefetch: int = 3, **views) -> None:
        if not split.streamed:
            raise DataError("StreamLoader reads a host split (data.placement = 'stream')")
        super().__init__(len(split), tuple(split.images.shape[-2:]), batch_size, seed=seed,
                         crop_padding=crop_padding, hflip=hflip, noise_std=noise_std, **views)
        self.split = split
        self.images = split.images
        self.labels = split.labels.cpu().numpy()
        self.device = torch.device(device)
        self.rank, self.world = rank, world
        share = batch_size // world
        self.rows = slice(rank * share, (rank + 1) * share) if world > 1 else None
        self.prefetch = max(1, prefetch)
        self.cuda = self.device.type == "cuda"
        self._aug_gen = torch.Generator(device=self.device)
        self._perm_gen = torch.Generator()
        self._perm: tuple[int, np.ndarray] | None = None  # (epoch, its order)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._queue: queue.Queue | None = None
        self._halt: threading.Event | None = None
        self._next: tuple[int, int] | None = None
        self.wait_seconds = 0.0
        self.batches = 0

    # --- order -----------------------------------------------------------------------------

    def permutation(self, epoch: int) -> np.ndarray:
        """The order of the training images in `epoch` (CPU randperm from (seed, epoch))."""
        with self._lock:  # the reader thread asks; a direct caller may too
            if self._perm is None or self._perm[0] != epoch:
                if epoch < 0:
                    raise ValueError(f"epoch must be non-negative, got {epoch}")
                self._perm_gen.manual_seed(derive_seed(self.seed, _PERM_STREAM, epoch))
                self._perm = (epoch, torch.randperm(self.n_images, generator=self._perm_gen).numpy())
            return self._perm[1]

    def indices(self, epoch: int, index: int) -> np.ndarray:
        """The rows of batch `index` of `epoch` that this rank reads."""
        start = index * self.batch_size
        idx = self.permutation(epoch)[start:start + self.batch_size]
        return idx if self.rows is None else idx[self.rows]

    # --- the reader thread -------------------------------------------------------------------

    def _read(self, q: queue.Queue, halt: threading.Event, epoch: int, index: int) -> None:
        """Produce (key, images, labels, event) from (epoch, index) on, until halted."""
        try:
            stream = torch.cuda.Stream(self.device) if self.cuda else None  # CUDA only
            n = self.batch_size if self.rows is None else self.rows.stop - self.rows.start
            shape = (n, *self.images.shape[1:])
            ring = []
            if self.cuda:  # CUDA only: pinned buffers so the copy is asynchronous
                ring = [(torch.empty(shape, dtype=torch.uint8, pin_memory=True),
                         torch.empty(n, dtype=torch.int64, pin_memory=True), None)
                        for _ in range(self.prefetch + 2)]
            slot = 0
            while not halt.is_set():
                idx = self.indices(epoch, index)
                if self.cuda:
                    host_x, host_y, done = ring[slot]
                    if done is not None:
                        done.synchronize()  # this buffer's previous copy has left the host
                    self.images.gather(idx, out=host_x.numpy())
                    host_y.numpy()[:] = self.labels[idx]
                    with torch.cuda.stream(stream):
                        x = host_x.to(self.device, non_blocking=True)
                        y = host_y.to(self.device, non_blocking=True)
                        event = torch.cuda.Event()
                        event.record(stream)
                    ring[slot] = (host_x, host_y, event)
                    slot = (slot + 1) % len(ring)
                else:
                    x = torch.from_numpy(self.images.gather(idx))
                    y = torch.from_numpy(self.labels[idx])
                    event = None
                item = ((epoch, index), x, y, event)
                while not halt.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                index += 1
                if index == self.steps_per_epoch:
                    epoch, index = epoch + 1, 0
        except BaseException as exc:  # handed to the training thread, which raises it
            q.put(((-1, -1), exc, None, None))

    def _start(self, epoch: int, index: int) -> None:
        self.close()
        self._queue = queue.Queue(maxsize=self.prefetch)
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(self._queue, self._halt, epoch, index),
                                        name="ebjdat-stream-reader", daemon=True)
        self._thread.start()
        self._next = (epoch, index)

    def close(self) -> None:
        """Stop the reader thread (a new one starts on the next request)."""
        if self._thread is not None:
            self._halt.set()
            self._thread.join(timeout=10)
            self._thread = None
            self._queue = None
            self._next = None

    # --- batches -----------------------------------------------------------------------------

    def views(self, epoch: int, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Batch `index` of `epoch` (this rank's share under torchrun): (x, y, classifier x or None)."""
        self.check_index(index)
        if self._next != (epoch, index):  # first request, resume, rollback: restart the reader there
            self._start(epoch, index)
        t0 = time.perf_counter()
        key, x, y, event = self._queue.get()
        self.wait_seconds += time.perf_counter() - t0
        if isinstance(x, BaseException):
            self.close()
            raise x
        assert key == (epoch, index), (key, epoch, index)
        if event is not None:  # CUDA only: order the copy before the step, without a host sync
            current = torch.cuda.current_stream(self.device)
            current.wait_event(event)
            x.record_stream(current)
            y.record_stream(current)
        nxt = index + 1
        self._next = (epoch, nxt) if nxt < self.steps_per_epoch else (epoch + 1, 0)
        self.batches += 1
        x, x_clf = self.augment(x, self._aug_gen, epoch, index, rows=self.rows)
        return x, y, x_clf

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def make_loader(split: ImageSplit, batch_size: int, *, seed: int, device: torch.device,
                rank: int = 0, world: int = 1, **settings):
    """The loader for `split`: `StreamLoader` for a host split, `DeviceLoader` otherwise."""
    if split.streamed:
        return StreamLoader(split, batch_size, seed=seed, device=device, rank=rank, world=world,
                            **settings)
    from .loader import DeviceLoader

    return DeviceLoader(split, batch_size, seed=seed, **settings)


__all__ = ["StreamLoader", "make_loader"]
