"""Samplers and attacks: the inner loops of the energy-based and adversarial methods.

* p(x) samplers for the contrastive-divergence negatives ``x_q``: :func:`sgld` (JEM, SADA-JEM) and
  :func:`pyld` (JEM++'s PYLD-M-N), with the persistent-chain :class:`ReplayBuffer`, put together
  as the training methods' :class:`PxSampler`;
* attacks used inside training: :func:`pgd` (Madry), :func:`trades_attack` (TRADES / WEAT) and
  :func:`ebjdat_ascent` (EB-JDAT's inner max producing ``x̃``);
* DAT's negatives: :func:`generative_pgd` and its :class:`AucCurriculum` on T.

Conventions: every image is fp32 pixels in [0, 1] on the device; SGLD/PYLD steps are in the
model's normalised units (``input_std`` converts), attack budgets in pixel units; model forwards
run inside an ``autocast`` factory; parameters are frozen in every loop (:func:`frozen_params`),
the BatchNorm mode is the caller's (:func:`bn_mode`).
"""

from .adversarial import (
    ebjdat_ascent,
    ebjdat_objective,
    logit_cosine_distance,
    pgd,
    project,
    random_start,
    trades_attack,
    trades_kl,
)
from .buffer import ClassGaussians, ReplayBuffer
from .common import AutocastFactory, bn_mode, frozen_params, input_grad, l2_normalize, sampling_network
from .dat_negatives import AucCurriculum, generative_pgd, pairwise_auc
from .langevin import pyld, sgld
from .px import ALGORITHM, PxSampler

__all__ = [
    "ALGORITHM",
    "AucCurriculum",
    "AutocastFactory",
    "PxSampler",
    "ClassGaussians",
    "ReplayBuffer",
    "bn_mode",
    "ebjdat_ascent",
    "ebjdat_objective",
    "frozen_params",
    "generative_pgd",
    "input_grad",
    "l2_normalize",
    "logit_cosine_distance",
    "pairwise_auc",
    "pgd",
    "project",
    "pyld",
    "random_start",
    "sampling_network",
    "sgld",
    "trades_attack",
    "trades_kl",
]
