"""Train an occupancy model from a YAML config, on one process or under ``torchrun``.

The resolved config (file + ``--set`` overrides) is written to ``RUN/config.yaml``; logs go
to ``RUN/log.jsonl`` (and ``RUN/tb`` with TensorBoard installed); checkpoints to
``RUN/last.pt``. ``--resume RUN/last.pt`` continues a run exactly where it stopped.

Examples:
    gaussrender train --config configs/tiny_synthetic_render.yaml --run-dir runs/tiny
    gaussrender train --config configs/tpvformer_occ3d_render.yaml --run-dir runs/tpv --set data.root=/data/occ3d
    torchrun --nproc_per_node 8 -m gaussrender train --config configs/tpvformer_occ3d_render.yaml --run-dir runs/tpv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "train a model from a YAML config (torchrun for several GPUs/processes)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="YAML config (see configs/)")
    parser.add_argument("--run-dir", dest="run", required=True, type=Path,
                        help="run directory (config.yaml, log.jsonl, last.pt)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set optim.lr=1e-4 (repeatable; VALUE is YAML)")
    parser.add_argument("--resume", type=Path, default=None, help="checkpoint to resume from (e.g. RUN/last.pt)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..train.config import load_config
    from ..train.run import train

    try:
        cfg = load_config(args.config, args.overrides)
    except (FileNotFoundError, ValueError) as err:
        print(f"gaussrender train: error: {err}", file=sys.stderr)
        return 2
    if args.resume is not None and not args.resume.is_file():
        print(f"gaussrender train: error: checkpoint not found: {args.resume}", file=sys.stderr)
        return 2
    summary = train(cfg, args.run, resume=args.resume, progress=not args.no_progress)
    metrics = ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items())
    print(f"gaussrender train: done ({metrics}); run directory {args.run}")
    return 0
