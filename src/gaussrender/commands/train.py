"""Train an occupancy model from a YAML config, on one process or under ``torchrun``.

The resolved config (file + ``--set`` overrides) is written to ``RUN/config.yaml``; logs go
to ``RUN/log.jsonl`` (and ``RUN/tb`` with TensorBoard installed); checkpoints to
``RUN/last.pt``. ``--resume RUN/last.pt`` continues a run exactly where it stopped.

Exit status: 0 when the run finished; 2 for a bad config file, key, value, ``--set`` or
``--resume`` checkpoint (reported as ``error: ...`` naming it); 1 when training stopped on a
NaN/inf loss, gradient or parameter (``loss.nonfinite``).

``--config`` takes a YAML file or the name of a config shipped inside the package
(``tiny_synthetic_render``, ``tpvformer_occ3d_render``, ...; an unknown name lists them all).
``--print-config`` prints the resolved config and exits without training: every value marked
``# file``, ``# --set`` or ``# default`` by where it came from, then every option of the render
loss the trainer builds, with its effective value and what set it.

Examples:
    gaussrender train --config tiny_synthetic_render --run-dir runs/tiny
    gaussrender train --config tpvformer_occ3d_render --run-dir runs/tpv --set data.root=/data/occ3d
    gaussrender train --config my_config.yaml --print-config
    torchrun --nproc_per_node 8 -m gaussrender train --config tpvformer_occ3d_render --run-dir runs/tpv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import _checks

HELP = "train a model from a YAML config (torchrun for several GPUs/processes)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        required=True,
        help="YAML config file, or the name of a shipped config (e.g. tpvformer_occ3d_render)",
    )
    parser.add_argument(
        "--run-dir",
        dest="run",
        type=Path,
        default=None,
        help="run directory (config.yaml, log.jsonl, last.pt); required unless --print-config",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.lr=1e-4 (repeatable; VALUE is YAML)",
    )
    parser.add_argument("--resume", type=Path, default=None, help="checkpoint to resume from (e.g. RUN/last.pt)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    _checks.add_threads_argument(parser, None)
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config as YAML, each value marked file / --set / default, and the render "
        "loss's effective options, then exit",
    )


def _error(message: object, code: int = 2) -> int:
    print(f"gaussrender train: error: {message}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    """Exit codes: 0 the run finished; 2 a bad config, ``--set`` or ``--resume`` (nothing
    trained); 1 the run stopped on a non-finite loss, gradient or parameter."""
    from .._io import sigterm_as_exit
    from ..train.config import ConfigError, load_config
    from ..train.loop import NonFiniteLossError, ResumeError
    from ..train.run import train

    try:
        cfg = load_config(args.config, args.overrides)
    except (FileNotFoundError, ConfigError) as err:
        return _error(err)
    if args.print_config:
        from ..train.config_report import format_config

        print(format_config(cfg, args.config, args.overrides), end="")
        return 0
    if args.run is None:
        return _error("--run-dir is required (unless --print-config)")
    message = _checks.apply_threads(args.threads)
    if message is not None:
        return _error(message)
    # a path that exists but is no file (a directory, FIFO) is named by load_checkpoint
    if args.resume is not None and not (args.resume.exists() or args.resume.is_symlink()):
        return _error(f"checkpoint not found: {args.resume}")
    try:
        with sigterm_as_exit():
            summary = train(cfg, args.run, resume=args.resume, progress=not args.no_progress)
    except (ConfigError, ResumeError, FileNotFoundError) as err:
        return _error(err)
    except NonFiniteLossError as err:
        last = args.run / "last.pt"
        hint = f"; {last} is the last good checkpoint" if last.is_file() else ""
        return _error(f"training stopped: {err}{hint}", 1)
    metrics = ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items())
    print(f"gaussrender train: done ({metrics}); run directory {args.run}")
    return 0
