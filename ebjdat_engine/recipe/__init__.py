"""The typed recipe DSL: TOML -> frozen attrs configs, with `extends`, `--set` and exact errors."""

from .fields import Budget, parse_budget
from .load import RecipeError, from_toml_text, resolve, to_dict, to_toml
from .schema import (
    AdversaryConfig,
    DataConfig,
    EvalConfig,
    MethodConfig,
    ModelConfig,
    MonitorConfig,
    OptimConfig,
    Recipe,
    RunConfig,
    RuntimeConfig,
    SamplerConfig,
    TrainConfig,
    resolved_h2,
    resolved_objective,
)

__all__ = [
    "AdversaryConfig", "Budget", "DataConfig", "EvalConfig", "MethodConfig", "ModelConfig",
    "MonitorConfig", "OptimConfig", "Recipe", "RecipeError", "RunConfig", "RuntimeConfig",
    "SamplerConfig", "TrainConfig", "from_toml_text", "parse_budget", "resolve", "to_dict", "to_toml",
    "resolved_h2", "resolved_objective",
]
