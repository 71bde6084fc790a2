"""Moved: the config machinery to :mod:`interpretgan.settings`, each dataclass with its presets
and rules beside what it configures (:mod:`interpretgan.data.config`,
:mod:`interpretgan.models.config`, :mod:`interpretgan.robust.config`,
:mod:`interpretgan.interpret.config`, :mod:`interpretgan.run.config`). This module re-exports
them for one release."""
from .data.config import DataConfig  # noqa: F401
from .interpret.config import FIT_PRESETS, FitConfig, fit_for_image_size  # noqa: F401
from .models.config import ModelConfig  # noqa: F401
from .robust.config import TRAIN_PRESETS, TrainConfig, known_attack, train_preset_for  # noqa: F401
from .run.config import (DEFAULT_RUN_PRESETS, ResolvedRun, RUN_PRESETS, RunConfig, resolve_run,
                         run_preset_for)  # noqa: F401
from .settings import (ConfigError, MAX_BATCH, MAX_EPOCHS, MAX_EXPLAIN_IMAGES, MAX_GENERATOR_SEEDS,
                       MAX_INT, OPERATIONAL_FIELDS, at_least, at_most, check_image_memory,
                       check_type, fraction, from_dict, known, merge, need, one_of, override,
                       parse_assignments, physical_memory, positive, result_config, rules,
                       same_config, validate)  # noqa: F401
