"""Which zoo classifier to build (:class:`ModelConfig`) and its rules."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any
from .zoo import MODELS, POOLS
from ..settings import ConfigError, known, one_of, rules


@dataclass
class ModelConfig:
    name: str = "smallcnn"
    pool: str = "max"
    kwargs: dict[str, Any] = field(default_factory=dict)


@rules(ModelConfig)
def _model_rules(cfg: ModelConfig, p: str) -> None:
    known(p + "name", cfg.name, MODELS)
    one_of(p + "pool", cfg.pool, POOLS)
    params = inspect.signature(MODELS.get(cfg.name)).parameters
    if not any(q.kind is q.VAR_KEYWORD for q in params.values()):
        for k in cfg.kwargs:
            if k not in params:
                raise ConfigError(f"{p}kwargs: {cfg.name} takes no argument {k!r}; it takes "
                                  + ", ".join(params))
