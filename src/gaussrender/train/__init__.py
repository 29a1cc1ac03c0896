"""Training system: YAML configs, the training loop (single process or ``torchrun`` DDP),
checkpoints, logs, augmentation and a synthetic dataset for CPU runs.

Entry points: ``gaussrender train --config configs/<name>.yaml`` and
``gaussrender predict``; in Python :func:`gaussrender.train.loop.train`.
"""

from .config import Config, load_config, save_config

__all__ = ["Config", "load_config", "save_config"]
