"""Training methods, one module each; `build_method` picks one from `[method]`.

Each method receives only the sections it uses (`[method]`, and `[sampler]` / `[adversary]`
where it has a sampler or an attack) plus a small `MethodContext` of data and numerics facts.
"""

from __future__ import annotations

from ..recipe import AdversaryConfig, MethodConfig, RecipeError, SamplerConfig
from .adversarial import PGDAT, TRADES
from .base import Batch, Method, MethodContext, Samples, StepOutput, loss_weights
from .dat import DAT
from .ebjdat import EBJDAT
from .jem import JEMFamily
from .standard import Standard


def build_method(cfg: MethodConfig, sampler: SamplerConfig, adversary: AdversaryConfig,
                 ctx: MethodContext) -> Method:
    """The method named by `cfg.name`, built from the sections it needs."""
    if cfg.profile == "reference" and cfg.name != "ebjdat":  # the recipe layer refuses it first
        raise RecipeError([f"$.method.profile: 'reference' reproduces the released EB-JDAT code and "
                           f"exists only for method 'ebjdat', not {cfg.name!r}"])
    if cfg.name == "standard":
        return Standard(cfg)
    if cfg.name == "pgd_at":
        return PGDAT(cfg, adversary, ctx)
    if cfg.name == "trades":
        return TRADES(cfg, adversary, ctx)
    if cfg.name in ("jem", "jempp", "sadajem"):
        return JEMFamily(cfg.name, cfg, sampler, ctx)
    if cfg.name == "ebjdat":
        return EBJDAT(cfg, sampler, adversary, ctx)
    if cfg.name == "dat":
        return DAT(cfg, sampler, adversary, ctx)
    raise AssertionError(f"schema admits method {cfg.name!r} but no module builds it")


__all__ = ["Batch", "Method", "MethodContext", "Samples", "StepOutput", "build_method", "loss_weights"]
