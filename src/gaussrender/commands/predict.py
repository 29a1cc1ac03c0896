"""Predict occupancy with a trained checkpoint: one ``<token>.npz`` per sample.

Each file holds ``semantics``, uint8 ``[X, Y, Z]`` (the argmax class), the layout
``gaussrender eval`` scores; with ``--save-probabilities`` also ``probabilities``, float16
``[C, X, Y, Z]`` (softmax of the logits, compressed), from which ``gaussrender eval
--render-metrics`` scores the rendered views with the release's rule (soft features). The
model and data settings come from the run's ``config.yaml``; ``--data``/``--infos`` point it
at another copy of the data.

Files are written only inside ``--out``: sample tokens come from the info file and are
checked to be plain file names before they name a file (``docs/security.md``); the
checkpoint is loaded with ``torch.load(weights_only=True)``, so it cannot run code.

Example:
    gaussrender predict --config runs/tiny/config.yaml --checkpoint runs/tiny/last.pt --out runs/tiny/pred
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._checks import add_threads_argument, apply_threads

HELP = "write <token>.npz occupancy predictions of a trained checkpoint (scored by gaussrender eval)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", required=True, help="the run's config.yaml (or a shipped config's name, as gaussrender train takes)"
    )
    parser.add_argument("--checkpoint", required=True, type=Path, help="checkpoint (e.g. RUN/last.pt)")
    parser.add_argument("--out", required=True, type=Path, help="output directory for <token>.npz")
    parser.add_argument("--data", default=None, help="dataset root (default: the config's data.root)")
    parser.add_argument("--infos", default=None, help="info file (default: the config's val_infos)")
    parser.add_argument("--split", default="val", choices=("train", "val"), help="which split of the config")
    parser.add_argument(
        "--save-probabilities",
        action="store_true",
        help="also write the class probabilities (float16 [C, X, Y, Z], key 'probabilities'; Occ3D: 23 MB a "
        "sample before compression): gaussrender eval --render-metrics then scores the rendered views with the "
        "release's rule",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value (e.g. --set train.device=cpu)",
    )
    add_threads_argument(parser, None)


def run(args: argparse.Namespace) -> int:
    from ..train.config import load_config
    from ..train.distributed import shutdown_distributed
    from ..train.run import predict
    from ._checks import check_writable_dir, usable_device

    try:
        cfg = load_config(args.config, args.overrides)
    except (FileNotFoundError, ValueError) as err:
        print(f"gaussrender predict: error: {err}", file=sys.stderr)
        return 2
    message = apply_threads(args.threads)
    if message is not None:
        print(f"gaussrender predict: error: {message}", file=sys.stderr)
        return 2
    if not (args.checkpoint.exists() or args.checkpoint.is_symlink()):
        print(f"gaussrender predict: error: checkpoint not found: {args.checkpoint}", file=sys.stderr)
        return 2
    try:
        if cfg.train.device != "auto":
            usable_device(cfg.train.device, "train.device")
        if args.out.exists() and not args.out.is_dir():
            raise ValueError(f"--out {args.out} exists and is not a directory")
        check_writable_dir(args.out)
    except ValueError as err:
        print(f"gaussrender predict: error: {err}", file=sys.stderr)
        return 2
    try:
        written = predict(
            cfg,
            args.checkpoint,
            args.out,
            root=args.data,
            infos=args.infos,
            split=args.split,
            probabilities=args.save_probabilities,
        )
    finally:
        shutdown_distributed()
    print(f"gaussrender predict: wrote {len(written)} prediction(s) to {args.out}")
    return 0
