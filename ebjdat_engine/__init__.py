"""ebjdat's engine: recipes, data, models, samplers, methods, training and evaluation.

The engine knows nothing of terminals (no import of textual); front ends read the run
directory it writes. `load_classifier(run_dir_or_checkpoint)` gives any outside tool the
trained model as an `nn.Module` from [0, 1] images to logits (imported lazily, so that
importing the package does not import torch).
"""

from __future__ import annotations

from typing import Any

from ._version import __version__


def __getattr__(name: str) -> Any:
    if name == "load_classifier":
        from .eval.loading import load_classifier

        return load_classifier
    raise AttributeError(name)


__all__ = ["__version__", "load_classifier"]
