"""The p(x) sampler of the JEM family and EB-JDAT: replay buffer + SGLD (JEM, SADA-JEM) or PYLD (JEM++).

Chains start from the replay buffer (a fraction `reinit_freq` from the init distribution), run
`n_steps` steps with the parameters frozen and BatchNorm in `sampler.bn_mode`, and are written
back to the buffer. Samples stay fp32 in pixel units of [0, 1]; step sizes are in the model's
normalised-input units (ALGORITHMS.md §0), converted with `input_std`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..recipe import SamplerConfig
from .buffer import ReplayBuffer
from .common import AutocastFactory, sampling_network
from .langevin import pyld, sgld

#: the sampler algorithm each generative base uses (ALGORITHMS.md §10)
ALGORITHM = {"jem": "sgld", "jempp": "pyld", "sadajem": "sgld"}


class PxSampler:
    """Draws the negatives x_q of the p(x) term from a persistent replay buffer.

    `base` picks the algorithm (:data:`ALGORITHM`); JEM's SGLD runs without clipping to [0, 1].
    """

    def __init__(self, base: str, cfg: SamplerConfig, *, image_shape: tuple[int, int, int],
                 device: torch.device, n_classes: int, input_std: float, autocast: AutocastFactory,
                 train_images: torch.Tensor | None = None, train_labels: torch.Tensor | None = None):
        self.algorithm = ALGORITHM[base]
        self.cfg = cfg
        self.clip = base != "jem"
        self.input_std = input_std
        self.autocast = autocast
        self.buffer = ReplayBuffer(
            cfg.buffer_size, image_shape, device, init=cfg.buffer_init, reinit_freq=cfg.reinit_freq,
            train_images=train_images, train_labels=train_labels, n_classes=n_classes)

    def __call__(self, model: nn.Module, n: int) -> torch.Tensor:
        cfg = self.cfg
        x0, idx = self.buffer.sample(n)
        with sampling_network(model, cfg.bn_mode) as net:
            if self.algorithm == "pyld":
                x_q = pyld(net, x0, n_steps=cfg.n_steps, inner_steps=cfg.pyld_inner_steps,
                           inner_step=cfg.pyld_step, grad_clamp=cfg.grad_clamp, input_std=self.input_std,
                           noise_std=cfg.noise_std, autocast=self.autocast)
            else:
                x_q = sgld(net, x0, n_steps=cfg.n_steps, step_size=cfg.step_size,
                           noise_std=cfg.noise_std, grad_clamp=cfg.grad_clamp,
                           input_std=self.input_std, clip=self.clip, autocast=self.autocast)
        self.buffer.update(idx, x_q)
        return x_q

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer.load_state_dict(state["buffer"])
