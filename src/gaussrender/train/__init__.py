"""Training system: YAML configs, the training loop (single process or ``torchrun`` DDP),
checkpoints, logs, augmentation and a synthetic dataset for CPU runs.

Entry points: ``gaussrender train --config <name or file.yaml> --run-dir RUN`` and
``gaussrender predict``; in Python :func:`train` and :func:`predict`, or
:class:`~gaussrender.train.loop.Trainer` with your own model and datasets.
"""

from .config import Config, ConfigError, load_config, save_config
from .loop import NonFiniteLossError, ResumeError, Trainer
from .run import predict, train

__all__ = [
    "Config",
    "ConfigError",
    "load_config",
    "save_config",
    "Trainer",
    "NonFiniteLossError",
    "ResumeError",
    "train",
    "predict",
]
