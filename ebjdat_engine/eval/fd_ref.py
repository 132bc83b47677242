"""`fd_ref`: a Fréchet distance in the features of a reference classifier, for small datasets.

Inception features mean little on 8x8 digits or 28x28 Fashion-MNIST, and Inception costs about
0.2 s per image on a CPU. For these datasets the engine also reports a Fréchet distance in the
pooled penultimate features of a small CNN (``cnn``, width 2, BatchNorm) trained with plain
cross-entropy on the dataset's training split. It is always called ``fd_ref`` and never FID:
its values are not comparable with FIDs, nor across datasets, nor across versions of the
reference network (the cache file name carries the version).

The reference network is trained once (seeded, deterministic on a given device) and cached as
``<cache_dir>/fd_ref-<dataset>-v1.pt`` together with its test accuracy; later calls load it.
The cache directory is ``$EBJDAT_CACHE`` or ``~/.cache/ebjdat`` unless given.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import attrs
import torch
from torch import Tensor, nn

from ..data import DeviceLoader, load_dataset
from ..models import build_model
from ..recipe.schema import DataConfig, ModelConfig
from ..rundir.checkpoint import save_atomic
from .clean import clean_accuracy
from .frechet import frechet_distance_features

#: Version of the reference network and its training recipe; part of the cache file name.
FD_REF_VERSION = 1
#: Datasets fd_ref is defined for.
FD_REF_DATASETS = ("digits", "fashion-mnist")
#: The reference network's architecture.
FD_REF_MODEL = ModelConfig(arch="cnn", width=2, norm="batch")
#: Training recipe per dataset: Adam with cosine decay, plain CE, no augmentation.
_TRAIN = {
    "digits": {"epochs": 15, "batch_size": 64, "lr": 3e-3, "seed": 0},
    "fashion-mnist": {"epochs": 3, "batch_size": 128, "lr": 2e-3, "seed": 0},
}
_FORMAT = "ebjdat-fd-ref"


def default_cache_dir() -> Path:
    """``$EBJDAT_CACHE`` if set and non-empty, else ``~/.cache/ebjdat``."""
    return Path(os.environ.get("EBJDAT_CACHE") or "~/.cache/ebjdat").expanduser()


def cache_path(dataset: str, cache_dir: str | Path | None = None) -> Path:
    """Where the reference classifier of `dataset` is cached."""
    root = default_cache_dir() if cache_dir is None else Path(cache_dir)
    return root / f"fd_ref-{dataset}-v{FD_REF_VERSION}.pt"


def _check_dataset(name: str) -> None:
    if name not in FD_REF_DATASETS:
        raise ValueError(f"fd_ref is for small datasets ({', '.join(FD_REF_DATASETS)}); "
                         f"got {name!r}: use FID (Inception) for it")


def _train(data_cfg: DataConfig, device: torch.device) -> tuple[dict, float]:
    """Train the reference CNN on `data_cfg`'s training split; (checkpoint payload, seconds)."""
    start = time.perf_counter()
    hp = _TRAIN[data_cfg.name]
    cfg = attrs.evolve(data_cfg, n_valid=0, n_train=0, crop_padding=0, hflip=False, noise_std=0.0,
                       placement="device")  # a small dataset: the reference CNN trains on the device
    data = load_dataset(cfg, device, seed=hp["seed"])
    loader = DeviceLoader(data.train, hp["batch_size"], seed=hp["seed"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(hp["seed"])
        model = build_model(FD_REF_MODEL, data.image_shape, data.n_classes).to(device)
    total = hp["epochs"] * loader.steps_per_epoch
    opt = torch.optim.Adam(model.parameters(), lr=hp["lr"])
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total)))
    model.train()
    for epoch in range(hp["epochs"]):
        for x, y in loader.epoch(epoch):
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    acc, n_test = clean_accuracy(model, data.test)
    payload = {
        "format": _FORMAT,
        "version": FD_REF_VERSION,
        "dataset": data_cfg.name,
        "model": attrs.asdict(FD_REF_MODEL),
        "image_shape": list(data.image_shape),
        "n_classes": int(data.n_classes),
        "test_acc": float(acc),
        "n_test": int(n_test),
        "train": dict(hp),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    return payload, time.perf_counter() - start


def _model_from_payload(payload: dict, device: torch.device) -> nn.Module:
    model = build_model(ModelConfig(**payload["model"]), tuple(payload["image_shape"]),
                        int(payload["n_classes"]))
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()


def _load_cached(path: Path, dataset: str, device: torch.device) -> tuple[dict, nn.Module] | None:
    """The cached payload and model, or None when the file is missing, foreign or unreadable."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if (payload.get("format") != _FORMAT or payload.get("version") != FD_REF_VERSION
                or payload.get("dataset") != dataset):
            return None
        return payload, _model_from_payload(payload, device)
    except Exception:  # noqa: BLE001 - a damaged cache file is retrained, not fatal
        return None


def reference_classifier(data_cfg: DataConfig, device: torch.device | str = "cpu",
                         cache_dir: str | Path | None = None) -> nn.Module:
    """The reference CNN of ``data_cfg.name`` in eval mode, trained on first use and cached.

    Only for 'digits' and 'fashion-mnist' (ValueError otherwise). ``data_cfg.root`` says where
    the dataset lives; its augmentation and validation settings are ignored (the network trains
    on the whole training split without augmentation). Training is seeded: digits takes a few
    seconds on one CPU thread (> 95 % test accuracy), Fashion-MNIST a few minutes on a CPU.
    The returned module carries ``fd_ref_info``: dataset, test_acc, path, trained_now, seconds.
    """
    _check_dataset(data_cfg.name)
    device = torch.device(device)
    path = cache_path(data_cfg.name, cache_dir)
    cached = _load_cached(path, data_cfg.name, device)
    if cached is not None:
        payload, model = cached
        trained_now, seconds = False, 0.0
    else:
        payload, seconds = _train(data_cfg, device)
        try:
            save_atomic(payload, path)  # a cache: opportunistic, never a reason to fail
        except OSError as e:
            path = f"not cached ({path}: {e.strerror or e})"
        model = _model_from_payload(payload, device)
        trained_now = True
    model.fd_ref_info = {
        "dataset": payload["dataset"],
        "test_acc": float(payload["test_acc"]),
        "path": str(path),
        "trained_now": trained_now,
        "seconds": seconds,
        "image_shape": tuple(payload["image_shape"]),
    }
    return model


def _as_unit_float(images: Tensor) -> Tensor:
    """uint8 images -> float [0, 1] (/255); float images clamped to [0, 1] in float32."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32) / 255.0
    if not images.is_floating_point():
        raise ValueError(f"images must be uint8 or float, got {images.dtype}")
    return images.to(torch.float32).clamp(0.0, 1.0)


@torch.no_grad()
def reference_features(images: Tensor, classifier: nn.Module, batch_size: int = 500) -> Tensor:
    """Pooled penultimate features (N, D) of `images` (N, C, H, W) under `classifier` in eval mode.

    uint8 images are divided by 255; float images are taken as [0, 1] and clamped to it.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    expected = getattr(classifier, "fd_ref_info", {}).get("image_shape")
    if expected is not None and tuple(images.shape[1:]) != tuple(expected):
        raise ValueError(f"images of shape {tuple(images.shape[1:])} do not fit the reference "
                         f"classifier, which takes {tuple(expected)}")
    device = next(classifier.parameters()).device
    was_training = classifier.training
    classifier.eval()
    try:
        out = [classifier.features(_as_unit_float(images[i:i + batch_size].to(device))).cpu()
               for i in range(0, images.shape[0], batch_size)]
    finally:
        classifier.train(was_training)
    return torch.cat(out).to(torch.float64)


def fd_ref(fake: Tensor, real: Tensor, classifier: nn.Module, batch_size: int = 500, *,
           real_features: Tensor | None = None) -> dict:
    """Fréchet distance between `fake` and `real` images in the reference classifier's features.

    `fake` and `real` are (N, C, H, W) image tensors, float in [0, 1] or uint8 (each at least 2
    images). `real_features`: ``reference_features(real, classifier)`` when the caller has them
    already (several sets against one reference set); `real` is then only counted.
    Returns {"fd_ref", "feature_network", "n_fake", "n_real"}.
    """
    if fake.shape[0] < 2 or real.shape[0] < 2:
        raise ValueError(f"fd_ref needs at least 2 images per set, got {fake.shape[0]} fake and "
                         f"{real.shape[0]} real")
    if real_features is None:
        real_features = reference_features(real, classifier, batch_size)
    elif real_features.shape[0] != real.shape[0]:
        raise ValueError(f"real_features has {real_features.shape[0]} rows for {real.shape[0]} real images")
    value = frechet_distance_features(reference_features(fake, classifier, batch_size), real_features)
    info = getattr(classifier, "fd_ref_info", None)
    if info is not None:
        network = (f"ebjdat reference CNN (cnn w2 bn) trained on {info['dataset']}, "
                   f"test acc {info['test_acc']:.4f}")
    else:
        network = f"{type(classifier).__name__} (not a cached ebjdat reference CNN)"
    return {"fd_ref": value, "feature_network": network,
            "n_fake": int(fake.shape[0]), "n_real": int(real.shape[0])}
