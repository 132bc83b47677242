"""Data: datasets loaded once onto the device as uint8 tensors, and batches drawn from them.

`load_dataset` reads a dataset (`sources`), holds out a seeded validation split and moves the
splits to the device (`registry`); `DeviceLoader` yields shuffled, augmented training batches
as a stateless function of (seed, epoch, index) (`loader`, `augment`); `iterate_batches` walks
a split in order for evaluation. With `data.placement = "stream"` the training split stays on
the host (`host`) and `StreamLoader` reads its batches in the background (`stream`); image
folders are decoded once into a shard cache by `imagefolder.prepare`.
"""

from .host import HostImages
from .loader import DeviceLoader, iterate_batches
from .registry import DataSplits, ImageSplit, load_dataset, load_seed_images
from .sources import DataError
from .stream import StreamLoader, make_loader

__all__ = ["DataError", "DataSplits", "DeviceLoader", "HostImages", "ImageSplit", "StreamLoader",
           "iterate_batches", "load_dataset", "load_seed_images", "make_loader"]
