"""Training methods, one module each; `build_method` picks one from `[method]`."""

from __future__ import annotations

from ..recipe import MethodConfig
from .base import Batch, Method, StepOutput
from .standard import Standard

REGISTRY = {"standard": Standard}


def build_method(cfg: MethodConfig) -> Method:
    """The method named by `cfg.name` (the schema only admits names in REGISTRY)."""
    return REGISTRY[cfg.name](cfg)


__all__ = ["Batch", "Method", "StepOutput", "build_method", "REGISTRY"]
