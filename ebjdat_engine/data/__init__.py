"""Data: datasets loaded once onto the device as uint8 tensors, and batches drawn from them.

`load_dataset` reads a dataset (`sources`), holds out a seeded validation split and moves the
splits to the device (`registry`); `DeviceLoader` yields shuffled, augmented training batches
as a stateless function of (seed, epoch, index) (`loader`, `augment`); `iterate_batches` walks
a split in order for evaluation.
"""

from .loader import DeviceLoader, iterate_batches
from .registry import DataSplits, ImageSplit, load_dataset
from .sources import DataError

__all__ = ["DataError", "DataSplits", "DeviceLoader", "ImageSplit", "iterate_batches", "load_dataset"]
