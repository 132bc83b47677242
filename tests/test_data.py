"""Tests of ebjdat_engine.data: dataset loading, splits, the stateless loader, augmentations."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ebjdat_engine.data import (
    DataError,
    DataSplits,
    DeviceLoader,
    ImageSplit,
    iterate_batches,
    load_dataset,
)
from ebjdat_engine.data.augment import add_noise, hflip, pad_crop
from ebjdat_engine.recipe.schema import DataConfig

CPU = torch.device("cpu")
FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="module")
def digits() -> DataSplits:
    """Digits with no validation split (loaded once for the module)."""
    return load_dataset(DataConfig(name="digits"), CPU, seed=0)


def _image_keys(split: ImageSplit) -> Counter:
    """Multiset of (image bytes, label) pairs, to compare splits regardless of order."""
    images = split.images.reshape(len(split), -1).numpy()
    return Counter((row.tobytes(), int(lab)) for row, lab in zip(images, split.labels.numpy()))


def _id_split(n: int, shape: tuple[int, int, int] = (1, 4, 4)) -> ImageSplit:
    """A synthetic split whose label i is also written into every pixel of image i."""
    ids = torch.arange(n, dtype=torch.int64)
    images = (ids % 256).to(torch.uint8)[:, None, None, None].expand(n, *shape).contiguous()
    return ImageSplit(images=images, labels=ids)


def _random_split(n: int, shape: tuple[int, int, int] = (3, 8, 8), seed: int = 0) -> ImageSplit:
    """A synthetic split of random uint8 images (asymmetric, so flips and shifts show)."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, *shape), generator=gen, dtype=torch.uint8)
    return ImageSplit(images=images, labels=torch.arange(n, dtype=torch.int64))


# ------------------------------------------------------------------------------------------
# digits and the validation split
# ------------------------------------------------------------------------------------------


def test_digits_shapes_dtypes_ranges_and_classes(digits: DataSplits) -> None:
    assert digits.name == "digits"
    assert digits.n_classes == 10
    assert digits.image_shape == (1, 8, 8)
    assert digits.valid is None
    assert len(digits.train) == 1497 and len(digits.test) == 300
    for split in (digits.train, digits.test):
        assert split.images.dtype == torch.uint8 and split.labels.dtype == torch.int64
        assert split.images.shape[1:] == (1, 8, 8)
        assert split.images.device == CPU and split.labels.device == CPU
        assert set(split.labels.tolist()) == set(range(10))
    # values 0..16 map to round(v * 255 / 16): 0 and 255 both occur, nothing else sneaks in
    allowed = {int(round(v * 255 / 16)) for v in range(17)}
    values = set(torch.cat([digits.train.images.flatten(), digits.test.images.flatten()]).tolist())
    assert values <= allowed and {0, 255} <= values


def test_digits_test_split_is_stratified_and_seed_independent() -> None:
    a = load_dataset(DataConfig(name="digits", n_valid=100), CPU, seed=0)
    b = load_dataset(DataConfig(name="digits", n_valid=100), CPU, seed=1)
    assert torch.equal(a.test.images, b.test.images) and torch.equal(a.test.labels, b.test.labels)
    counts = torch.bincount(a.test.labels, minlength=10)
    assert int(counts.min()) >= 28 and int(counts.max()) <= 31  # about 30 per class


def test_validation_split_changes_with_seed_and_partitions_train(digits: DataSplits) -> None:
    a = load_dataset(DataConfig(name="digits", n_valid=100), CPU, seed=0)
    a2 = load_dataset(DataConfig(name="digits", n_valid=100), CPU, seed=0)
    b = load_dataset(DataConfig(name="digits", n_valid=100), CPU, seed=1)
    assert a.valid is not None and b.valid is not None
    assert len(a.valid) == 100 and len(a.train) == 1397
    assert torch.equal(a.valid.images, a2.valid.images)  # same seed, same hold-out
    assert _image_keys(a.valid) != _image_keys(b.valid)  # another seed, another hold-out
    for splits in (a, b):  # train + valid is exactly the full training set
        assert _image_keys(splits.train) + _image_keys(splits.valid) == _image_keys(digits.train)


def test_n_valid_too_large_is_a_data_error() -> None:
    with pytest.raises(DataError, match="data.n_valid"):
        load_dataset(DataConfig(name="digits", n_valid=1497), CPU, seed=0)


def test_n_train_keeps_a_seeded_subset_disjoint_from_validation(digits: DataSplits) -> None:
    full = load_dataset(DataConfig(name="digits", n_valid=100), CPU, seed=0)
    sub = load_dataset(DataConfig(name="digits", n_valid=100, n_train=500), CPU, seed=0)
    assert sub.valid is not None and len(sub.train) == 500
    assert torch.equal(sub.valid.images, full.valid.images)  # the same hold-out as without n_train
    kept, held = _image_keys(sub.train), _image_keys(sub.valid)
    assert set(kept) <= set(_image_keys(full.train)) and not set(kept) & set(held)
    assert Counter(sub.train.labels.tolist()).keys() == set(range(10))  # a random subset: every class
    only = load_dataset(DataConfig(name="digits", n_train=300), CPU, seed=0)
    assert only.valid is None and len(only.train) == 300
    assert torch.equal(sub.test.images, full.test.images)  # the test split never changes
    with pytest.raises(DataError, match="data.n_train"):
        load_dataset(DataConfig(name="digits", n_valid=100, n_train=1400), CPU, seed=0)


# ------------------------------------------------------------------------------------------
# DeviceLoader
# ------------------------------------------------------------------------------------------


def test_loader_batches_are_float_in_unit_range_and_match_the_split(digits: DataSplits) -> None:
    loader = DeviceLoader(digits.train, 64, seed=3)
    assert loader.steps_per_epoch == 1497 // 64
    x, y = loader.batch(0, 0)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.shape == (64, 1, 8, 8) and y.shape == (64,)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    idx = loader.permutation(0)[:64]
    assert torch.equal(x, digits.train.images[idx].float() / 255)
    assert torch.equal(y, digits.train.labels[idx])


def test_loader_visits_every_image_exactly_once_per_epoch() -> None:
    split = _id_split(96)
    loader = DeviceLoader(split, 16, seed=0)
    for epoch in (0, 1):
        seen = []
        for index in range(loader.steps_per_epoch):
            x, y = loader.batch(epoch, index)
            assert torch.equal(x[:, 0, 0, 0], y.float() / 255)  # images travel with their labels
            seen.append(y)
        assert torch.equal(torch.sort(torch.cat(seen)).values, torch.arange(96))
    # drop-last: 100 images in batches of 16 give 6 batches of distinct images
    loader = DeviceLoader(_id_split(100), 16, seed=0)
    labels = torch.cat([y for _, y in loader.epoch(0)])
    assert loader.steps_per_epoch == 6 and len(labels) == 96 and len(set(labels.tolist())) == 96


def test_loader_is_a_pure_function_of_seed_epoch_index(digits: DataSplits) -> None:
    kwargs = dict(seed=5, crop_padding=2, hflip=True, noise_std=0.05)
    first = DeviceLoader(digits.train, 32, **kwargs)
    x0, y0 = first.batch(2, 7)
    # a loader that has walked other epochs and batches first (a run before its checkpoint)
    walked = DeviceLoader(digits.train, 32, **kwargs)
    for epoch in range(3):
        for index in range(0, walked.steps_per_epoch, 9):
            walked.batch(epoch, index)
    x1, y1 = walked.batch(2, 7)
    assert torch.equal(x0, x1) and torch.equal(y0, y1)
    # and asking again after touching another epoch changes nothing
    first.batch(0, 0)
    x2, _ = first.batch(2, 7)
    assert torch.equal(x0, x2)
    # a different index, epoch or seed gives a different batch
    assert not torch.equal(first.batch(2, 8)[1], y0)
    assert not torch.equal(first.permutation(3), first.permutation(2))
    assert not torch.equal(DeviceLoader(digits.train, 32, **{**kwargs, "seed": 6}).batch(2, 7)[1], y0)


def test_loader_augmentation_randomness_depends_on_index() -> None:
    # the same images at two indices must get different crops: use a split of identical images
    image = torch.randint(0, 256, (1, 3, 8, 8), generator=torch.Generator().manual_seed(0),
                          dtype=torch.uint8)
    split = ImageSplit(images=image.expand(64, 3, 8, 8).contiguous(), labels=torch.zeros(64, dtype=torch.long))
    loader = DeviceLoader(split, 32, seed=0, crop_padding=2, hflip=True)
    assert not torch.equal(loader.batch(0, 0)[0], loader.batch(0, 1)[0])
    assert not torch.equal(loader.batch(0, 0)[0], loader.batch(1, 0)[0])


def test_loader_rejects_a_batch_larger_than_the_data() -> None:
    with pytest.raises(DataError, match="batch_size"):
        DeviceLoader(_id_split(10), 11, seed=0)
    with pytest.raises(DataError, match="crop_padding"):
        DeviceLoader(_id_split(10), 2, seed=0, crop_padding=4)  # 4x4 images cannot reflect-pad 4


def test_loader_crop_and_flip_are_windows_of_the_padded_source() -> None:
    split = _random_split(64)
    p = 2
    loader = DeviceLoader(split, 64, seed=1, crop_padding=p, hflip=True)
    x, y = loader.batch(0, 0)
    source = split.images[y].float() / 255
    padded = F.pad(source, (p, p, p, p), mode="reflect")
    for b in range(64):
        windows = [padded[b, :, i:i + 8, j:j + 8] for i in range(2 * p + 1) for j in range(2 * p + 1)]
        assert any(torch.equal(x[b], w) or torch.equal(x[b], w.flip(-1)) for w in windows)
    assert not torch.equal(x, source)


def test_loader_noise_has_the_requested_std_and_is_not_clipped(digits: DataSplits) -> None:
    std = 0.1
    noisy = DeviceLoader(digits.train, 1024, seed=0, noise_std=std)
    clean = DeviceLoader(digits.train, 1024, seed=0)
    xn, yn = noisy.batch(0, 0)
    xc, yc = clean.batch(0, 0)
    assert torch.equal(yn, yc)  # noise does not change the order
    diff = xn - xc
    assert abs(float(diff.std()) - std) < 0.005 and abs(float(diff.mean())) < 0.005
    assert float(xn.min()) < 0.0 and float(xn.max()) > 1.0


# ------------------------------------------------------------------------------------------
# augmentations
# ------------------------------------------------------------------------------------------


def test_pad_crop_returns_a_shifted_window_per_image_with_varied_offsets() -> None:
    x = torch.rand(64, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    p = 3
    out = pad_crop(x, p, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = F.pad(x, (p, p, p, p), mode="reflect")
    offsets = set()
    for b in range(64):
        match = [(i, j) for i in range(2 * p + 1) for j in range(2 * p + 1)
                 if torch.equal(out[b], padded[b, :, i:i + 8, j:j + 8])]
        assert len(match) == 1
        offsets.add(match[0])
    assert len(offsets) > 10  # each image draws its own offset
    assert torch.equal(pad_crop(x, 0, torch.Generator()), x)
    same = pad_crop(x, p, torch.Generator().manual_seed(1))
    assert torch.equal(out, same)


def test_hflip_mirrors_about_half_the_images_exactly() -> None:
    x = torch.rand(64, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    out = hflip(x, torch.Generator().manual_seed(2))
    flipped = [torch.equal(out[b], x[b].flip(-1)) for b in range(64)]
    kept = [torch.equal(out[b], x[b]) for b in range(64)]
    assert all(f != k for f, k in zip(flipped, kept))  # each image is exactly one of the two
    assert 16 <= sum(flipped) <= 48
    first = flipped.index(True)  # a mirror: column 0 of the output is the input's last column
    assert torch.equal(out[first, :, :, 0], x[first, :, :, -1])


def test_add_noise_std_and_determinism() -> None:
    x = torch.full((256, 1, 16, 16), 0.5)
    out = add_noise(x, 0.2, torch.Generator().manual_seed(0))
    assert abs(float((out - x).std()) - 0.2) < 0.005
    assert torch.equal(out, add_noise(x, 0.2, torch.Generator().manual_seed(0)))
    assert torch.equal(add_noise(x, 0.0, torch.Generator()), x)


# ------------------------------------------------------------------------------------------
# evaluation iterator
# ------------------------------------------------------------------------------------------


def test_iterate_batches_walks_in_order_with_limit(digits: DataSplits) -> None:
    batches = list(iterate_batches(digits.test, 128))
    assert [len(y) for _, y in batches] == [128, 128, 44]
    x = torch.cat([b for b, _ in batches])
    assert x.dtype == torch.float32 and torch.equal(x, digits.test.images.float() / 255)
    assert torch.equal(torch.cat([y for _, y in batches]), digits.test.labels)
    limited = list(iterate_batches(digits.test, 64, limit=100))
    assert [len(y) for _, y in limited] == [64, 36]
    assert torch.equal(limited[1][1], digits.test.labels[64:100])


# ------------------------------------------------------------------------------------------
# fashion-mnist and CIFAR files
# ------------------------------------------------------------------------------------------


def _write_idx(path: Path, array: np.ndarray, magic: int, compress: bool) -> None:
    """Write `array` as an idx file (big-endian int32 header, uint8 body)."""
    header = np.array([magic, *array.shape], dtype=">i4").tobytes()
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path, "wb") as handle:
            handle.write(data)
    else:
        path.write_bytes(data)


@pytest.mark.parametrize("layout", ["debian", "torchvision"])
def test_fashion_mnist_reader_parses_idx_files(tmp_path: Path, layout: str) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path if layout == "debian" else tmp_path / "FashionMNIST" / "raw"
    folder.mkdir(parents=True, exist_ok=True)
    compress = layout == "debian"
    suffix = ".gz" if compress else ""
    arrays = {}
    for prefix, n in (("train", 20), ("t10k", 7)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        _write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, 2051, compress)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, 2049, compress)
        arrays[prefix] = (images, labels)
    splits = load_dataset(DataConfig(name="fashion-mnist", root=str(tmp_path)), CPU, seed=0)
    assert splits.image_shape == (1, 28, 28) and splits.n_classes == 10
    assert np.array_equal(splits.train.images[:, 0].numpy(), arrays["train"][0])
    assert np.array_equal(splits.train.labels.numpy(), arrays["train"][1].astype(np.int64))
    assert np.array_equal(splits.test.images[:, 0].numpy(), arrays["t10k"][0])
    assert splits.test.labels.dtype == torch.int64


def test_fashion_mnist_missing_files_error_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset(DataConfig(name="fashion-mnist", root=str(tmp_path)), CPU, seed=0)
    message = str(info.value)
    for needle in (str(tmp_path), "apt-get install dataset-fashion-mnist", "--set data.root=DIR",
                   "--set data.download=true"):
        assert needle in message


def test_fashion_mnist_real_files() -> None:
    if not (FASHION_ROOT / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST not in {FASHION_ROOT}: apt-get install dataset-fashion-mnist")
    splits = load_dataset(DataConfig(name="fashion-mnist"), CPU, seed=0)
    assert len(splits.train) == 60000 and len(splits.test) == 10000
    assert splits.image_shape == (1, 28, 28) and splits.n_classes == 10
    assert splits.train.images.dtype == torch.uint8
    assert set(splits.test.labels.unique().tolist()) == set(range(10))
    assert torch.bincount(splits.train.labels).tolist() == [6000] * 10


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_missing_root_error_names_root_and_flag(tmp_path: Path, name: str) -> None:
    root = tmp_path / "no-cifar-here"
    with pytest.raises(DataError) as info:
        load_dataset(DataConfig(name=name, root=str(root), download=False), CPU, seed=0)
    message = str(info.value)
    assert str(root) in message and "--set data.download=true" in message
    assert not root.exists() or not any(root.iterdir())  # nothing was downloaded


@pytest.mark.gpu
def test_loader_on_cuda_is_deterministic_and_matches_its_split() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    cuda = torch.device("cuda")
    splits = load_dataset(DataConfig(name="digits"), cuda, seed=0)
    assert splits.train.images.device.type == "cuda"
    kwargs = dict(seed=1, crop_padding=2, hflip=True, noise_std=0.01)
    x0, y0 = DeviceLoader(splits.train, 64, **kwargs).batch(1, 2)
    x1, y1 = DeviceLoader(splits.train, 64, **kwargs).batch(1, 2)
    assert x0.device.type == "cuda" and torch.equal(x0, x1) and torch.equal(y0, y1)
    plain = DeviceLoader(splits.train, 64, seed=1)
    x, y = plain.batch(0, 0)
    assert torch.equal(x, splits.train.images[plain.permutation(0)[:64]].float() / 255)
