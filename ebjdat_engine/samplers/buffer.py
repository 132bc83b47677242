"""The replay buffer of persistent SGLD/PYLD chains (PCD), kept on the device as fp32 [0, 1] images.

JEM (ALGORITHMS.md §1.2) starts each chain from a random buffer entry, or with probability
``reinit_freq`` (ρ = 0.05) from a fresh draw of the init distribution, and writes the chains' final
states ``x_q`` back. The init distribution is

* 'uniform' — U(0, 1) pixels (JEM's U(-1, 1) in normalised units);
* 'class_gaussian' — JEM++'s informative init (§2.2, §3.2): per class c a Gaussian
  ``N(μ_c, Σ_c + 1e-4·I)`` with full covariance fitted once on the class's training images, a
  draw picks a class uniformly at random and is clipped to [0, 1];
* 'data_noise' — random training images plus ``N(0, data_noise_std²)``, clipped.

Everything that runs per training step (:meth:`ReplayBuffer.sample`, :meth:`~ReplayBuffer.update`)
is vectorised over the batch and free of host syncs; the reinit choice is a ``torch.where``.
"""

from __future__ import annotations

import torch

INITS = ("uniform", "class_gaussian", "data_noise")

#: Ridge added to each class covariance before its Cholesky factorisation (JEM++'s 1e-4·I; here in
#: pixel units of [0, 1], where JEM++ adds it in [-1, 1] units — 4x the relative jitter, a
#: negligible difference that keeps Σ_c positive definite even for classes with few images).
COV_JITTER = 1e-4


def _as_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float32 [0, 1]; float images are taken as already in [0, 1]."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    return images.to(torch.float32)


class ClassGaussians:
    """Per-class Gaussians ``N(μ_c, Σ_c + jitter·I)`` on flattened [0, 1] images (JEM++'s init).

    Fitted once, class by class (each class one (n_c, D)ᵀ(n_c, D) product; no per-image loop), in
    float64 with the unbiased covariance, then kept as float32 means ``mu`` (C, D) and Cholesky
    factors ``chol`` (C, D, D) with ``Σ_c + jitter·I = L_c L_cᵀ``. A draw is ``μ_c + L_c z``,
    ``z ~ N(0, I)``, clipped to [0, 1]. CIFAR-10: D = 3072, 10 factors of 38 MB each.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, n_classes: int,
                 device: torch.device, jitter: float = COV_JITTER) -> None:
        images = images.to(device)
        labels = labels.to(device).long()
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} train images but {labels.shape[0]} labels")
        if n_classes <= 0:
            n_classes = int(labels.max().item()) + 1
        counts = torch.bincount(labels, minlength=n_classes).tolist()  # one sync, at fit time only
        if len(counts) > n_classes:
            raise ValueError(f"labels go up to {len(counts) - 1} but n_classes is {n_classes}")
        empty = [c for c, n in enumerate(counts) if n == 0]
        if empty:
            raise ValueError(f"buffer_init 'class_gaussian' needs training images of every class; "
                             f"classes {empty} have none (use buffer_init 'uniform' or 'data_noise')")
        self.image_shape = tuple(int(s) for s in images.shape[1:])
        dim = images[0].numel()
        order = torch.argsort(labels, stable=True)
        flat = images.reshape(images.shape[0], dim)[order]
        mus, chols = [], []
        eye = torch.eye(dim, dtype=torch.float64, device=device)
        for xc in torch.split(flat, counts):
            xc = _as_unit_float(xc).to(torch.float64)
            mu = xc.mean(dim=0)
            centred = xc - mu
            cov = centred.T @ centred / max(xc.shape[0] - 1, 1)
            chol = torch.linalg.cholesky(cov + jitter * eye)
            mus.append(mu.to(torch.float32))
            chols.append(chol.to(torch.float32))
        self.mu = torch.stack(mus)        # (C, D)
        self.chol = torch.stack(chols)    # (C, D, D)
        self.n_classes = n_classes

    def draw(self, classes: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One clipped draw per entry of `classes` (N,), shaped (N, *image_shape), no host sync.

        Each class's factor multiplies the whole noise batch and a mask keeps that class's rows:
        C small matmuls instead of a per-image loop or an (N, D, D) gather.
        """
        classes = classes.to(self.mu.device).long()
        z = torch.randn((classes.shape[0], self.mu.shape[1]), generator=generator,
                        device=self.mu.device, dtype=torch.float32)
        out = self.mu[classes]
        for c in range(self.n_classes):
            keep = (classes == c)[:, None]
            out = out + torch.where(keep, z @ self.chol[c].T, 0.0)
        return out.clamp_(0.0, 1.0).view(-1, *self.image_shape)

    def draw_balanced(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """`n` draws with the classes as equal as possible (JEM++'s initial buffer: 1,000 per class),
        one matmul per class, in random order."""
        per_class = [n // self.n_classes + (1 if c < n % self.n_classes else 0)
                     for c in range(self.n_classes)]
        parts = []
        for c, k in enumerate(per_class):
            if k == 0:
                continue
            z = torch.randn((k, self.mu.shape[1]), generator=generator, device=self.mu.device,
                            dtype=torch.float32)
            parts.append(self.mu[c] + z @ self.chol[c].T)
        out = torch.cat(parts)
        perm = torch.randperm(n, generator=generator, device=self.mu.device)
        return out[perm].clamp_(0.0, 1.0).view(-1, *self.image_shape)


class ReplayBuffer:
    """JEM's replay buffer of persistent chains: `size` fp32 [0, 1] images on `device`.

    ``init`` picks the init distribution (module docstring), ``reinit_freq`` is ρ, the probability
    that a chain restarts from a fresh init draw. `train_images` (uint8 0..255 or float [0, 1],
    (N, C, H, W)) are needed by 'class_gaussian' (with `train_labels`; `n_classes` 0 = infer) and
    'data_noise'. The buffer starts filled with `size` init draws ('class_gaussian': class-balanced).
    Randomness comes from `generator` when given, else the global torch RNG.
    """

    def __init__(self, size: int, image_shape: tuple[int, int, int], device: torch.device | str, *,
                 init: str, reinit_freq: float, train_images: torch.Tensor | None = None,
                 train_labels: torch.Tensor | None = None, n_classes: int = 0,
                 data_noise_std: float = 0.1, generator: torch.Generator | None = None) -> None:
        if init not in INITS:
            raise ValueError(f"buffer init must be one of {', '.join(INITS)}; got {init!r}")
        if size < 1:
            raise ValueError(f"buffer size must be >= 1, got {size}")
        if not 0.0 <= reinit_freq <= 1.0:
            raise ValueError(f"reinit_freq must be a probability in [0, 1], got {reinit_freq}")
        self.size = int(size)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.device = torch.device(device)
        self.init = init
        self.reinit_freq = float(reinit_freq)
        self.data_noise_std = float(data_noise_std)
        self.generator = generator
        self._gaussians: ClassGaussians | None = None
        self._train_images: torch.Tensor | None = None
        if init in ("class_gaussian", "data_noise"):
            if train_images is None or len(train_images) == 0:
                raise ValueError(f"buffer init {init!r} needs the training images")
            if tuple(train_images.shape[1:]) != self.image_shape:
                raise ValueError(f"train images are {tuple(train_images.shape[1:])}, "
                                 f"buffer images {self.image_shape}")
        if init == "class_gaussian":
            if train_labels is None:
                raise ValueError("buffer init 'class_gaussian' needs the training labels")
            self._gaussians = ClassGaussians(train_images, train_labels, n_classes, self.device)
        elif init == "data_noise":
            self._train_images = train_images.to(self.device)
        self.buffer = self._fill(self.size)

    # ------------------------------------------------------------------ the init distribution

    def init_draws(self, n: int) -> torch.Tensor:
        """`n` fresh draws (n, C, H, W) from the init distribution, fp32 in [0, 1], no host sync."""
        shape = (n, *self.image_shape)
        g = self.generator
        if self.init == "uniform":
            return torch.rand(shape, generator=g, device=self.device)
        if self.init == "class_gaussian":
            assert self._gaussians is not None
            classes = torch.randint(self._gaussians.n_classes, (n,), generator=g, device=self.device)
            return self._gaussians.draw(classes, g)
        assert self._train_images is not None
        idx = torch.randint(self._train_images.shape[0], (n,), generator=g, device=self.device)
        x = _as_unit_float(self._train_images[idx])
        noise = torch.randn(shape, generator=g, device=self.device)
        return (x + self.data_noise_std * noise).clamp_(0.0, 1.0)

    def class_draws(self, classes: torch.Tensor) -> torch.Tensor:
        """Draws from the given classes' Gaussians ('class_gaussian' only), e.g. for p(x|y) chains."""
        if self._gaussians is None:
            raise ValueError(f"class_draws needs buffer init 'class_gaussian', not {self.init!r}")
        return self._gaussians.draw(classes, self.generator)

    def _fill(self, n: int) -> torch.Tensor:
        """`n` init draws for (re)filling the whole buffer; class-balanced for 'class_gaussian'."""
        if self._gaussians is not None:
            return self._gaussians.draw_balanced(n, self.generator)
        return self.init_draws(n)

    # ------------------------------------------------------------------ per-step use

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Chain starts ``x0`` (n, C, H, W) and their buffer slots ``idx`` (n,).

        Each start is a uniformly random buffer entry, replaced by a fresh init draw with
        probability ρ = `reinit_freq` (a device-side ``torch.where``; no host sync).
        """
        g = self.generator
        idx = torch.randint(self.size, (n,), generator=g, device=self.device)
        x0 = self.buffer[idx]
        if self.reinit_freq > 0:
            fresh = self.init_draws(n)
            restart = torch.rand((n,), generator=g, device=self.device) < self.reinit_freq
            x0 = torch.where(restart.view(-1, 1, 1, 1), fresh, x0)
        return x0, idx

    def update(self, idx: torch.Tensor, x: torch.Tensor) -> None:
        """Write the chains' final states `x` back into slots `idx` (the PCD step)."""
        self.buffer[idx] = x.detach().to(self.buffer.dtype)

    def reinitialize(self) -> None:
        """Refill the whole buffer from the init distribution (collapse rollback)."""
        self.buffer.copy_(self._fill(self.size))

    # ------------------------------------------------------------------ checkpointing

    def state_dict(self) -> dict:
        """The buffer tensor (a copy). The class Gaussians are not saved: refitting them from the
        same training images is deterministic."""
        return {"buffer": self.buffer.detach().clone()}

    def load_state_dict(self, state: dict) -> None:
        """Restore the buffer from :meth:`state_dict`; its shape must match this buffer's."""
        saved = state["buffer"]
        if tuple(saved.shape) != tuple(self.buffer.shape):
            raise ValueError(f"saved replay buffer has shape {tuple(saved.shape)}, this run's is "
                             f"{tuple(self.buffer.shape)} (sampler.buffer_size or the dataset differ)")
        self.buffer.copy_(saved.to(self.device, torch.float32))
