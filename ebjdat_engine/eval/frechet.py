"""Fréchet distance between Gaussians fitted to feature sets, and the kernel (KID) estimate.

Shared by the reference-classifier distance (`fd_ref`) and anything else that has features in
hand. All arithmetic is float64 on the host (numpy); the matrix square root goes through
symmetric eigendecompositions, so there is no imaginary residue to discard:

    FD = |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr sqrt(S1^1/2 S2 S1^1/2)

and ``tr sqrt(S1^1/2 S2 S1^1/2) = tr sqrt(S1 S2)`` (similar matrices). `kid` reproduces
torch-fidelity's polynomial-kernel MMD (Bińkowski et al., 2018) including its subset sampling.
"""

from __future__ import annotations

import numpy as np
import torch


def _as_float64(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """A float64 host copy of a tensor or array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def feature_stats(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), covariance (D, D)) of features (N, D) in float64; covariance with N - 1.

    The same estimator as torch-fidelity and the TTUR code (``np.cov(rowvar=False)``).
    """
    f = _as_float64(features)
    if f.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {f.shape}")
    if f.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors for a covariance, got {f.shape[0]}")
    if not np.isfinite(f).all():
        raise ValueError("features contain NaN or infinite values")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def _sqrt_psd(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a (numerically) positive semi-definite matrix."""
    sym = (sigma + sigma.T) / 2.0
    w, v = np.linalg.eigh(sym)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr sqrt(sigma1 sigma2) for PSD sigma1, sigma2, via the symmetric S1^1/2 S2 S1^1/2."""
    root1 = _sqrt_psd(sigma1)
    inner = root1 @ sigma2 @ root1
    w = np.linalg.eigvalsh((inner + inner.T) / 2.0)
    return float(np.sqrt(np.clip(w, 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray | torch.Tensor, sigma1: np.ndarray | torch.Tensor,
                     mu2: np.ndarray | torch.Tensor, sigma2: np.ndarray | torch.Tensor) -> float:
    """Fréchet (2-Wasserstein squared) distance between N(mu1, sigma1) and N(mu2, sigma2).

    Inputs are mean vectors (D,) and covariance matrices (D, D); computed in float64. Singular
    covariances (fewer samples than dimensions) are fine. Rounding can push the exact-zero case
    a hair below 0; the result is clipped at 0.
    """
    m1, m2 = _as_float64(mu1).reshape(-1), _as_float64(mu2).reshape(-1)
    s1, s2 = np.atleast_2d(_as_float64(sigma1)), np.atleast_2d(_as_float64(sigma2))
    d = m1.shape[0]
    if m2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"shape mismatch: mu1 {m1.shape}, sigma1 {s1.shape}, mu2 {m2.shape}, "
                         f"sigma2 {s2.shape}")
    for name, a in (("mu1", m1), ("sigma1", s1), ("mu2", m2), ("sigma2", s2)):
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contains NaN or infinite values")
    diff = m1 - m2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt_product(s1, s2))
    return max(value, 0.0)


def frechet_distance_features(features1: np.ndarray | torch.Tensor,
                              features2: np.ndarray | torch.Tensor) -> float:
    """`frechet_distance` of the Gaussians fitted to two feature sets (N1, D) and (N2, D)."""
    return frechet_distance(*feature_stats(features1), *feature_stats(features2))


def _poly_kernel(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float) -> np.ndarray:
    return (x @ y.T * gamma + coef0) ** degree


def _mmd2_unbiased(k_xx: np.ndarray, k_xy: np.ndarray, k_yy: np.ndarray) -> float:
    """Unbiased MMD^2 estimate (torch-fidelity's `mmd2` with mmd_est='unbiased')."""
    m = k_xx.shape[0]
    sum_xx = k_xx.sum() - np.trace(k_xx)
    sum_yy = k_yy.sum() - np.trace(k_yy)
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


def kid(features1: np.ndarray | torch.Tensor, features2: np.ndarray | torch.Tensor,
        subsets: int = 100, subset_size: int = 1000, *, degree: int = 3,
        gamma: float | None = None, coef0: float = 1.0, seed: int = 2020) -> tuple[float, float]:
    """Kernel distance (KID): (mean, std) of the unbiased polynomial-kernel MMD^2 over `subsets`
    random subsets of `subset_size` points from each set.

    Kernel k(x, y) = (gamma x.y + coef0)^degree with gamma = 1/D by default; subsets drawn
    without replacement by ``np.random.RandomState(seed)`` in torch-fidelity's order, so on the
    same features this returns torch-fidelity's numbers.
    """
    f1, f2 = _as_float64(features1), _as_float64(features2)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"features must be (N1, D) and (N2, D), got {f1.shape} and {f2.shape}")
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    if not 2 <= subset_size <= min(len(f1), len(f2)):
        raise ValueError(f"KID subset size must be between 2 and the smaller set size "
                         f"({len(f1)}, {len(f2)}), got {subset_size}")
    g = 1.0 / f1.shape[1] if gamma is None else float(gamma)
    rng = np.random.RandomState(seed)
    mmds = np.zeros(subsets)
    for i in range(subsets):
        x = f1[rng.choice(len(f1), subset_size, replace=False)]
        y = f2[rng.choice(len(f2), subset_size, replace=False)]
        mmds[i] = _mmd2_unbiased(_poly_kernel(x, x, degree, g, coef0),
                                 _poly_kernel(x, y, degree, g, coef0),
                                 _poly_kernel(y, y, degree, g, coef0))
    return float(mmds.mean()), float(mmds.std())
