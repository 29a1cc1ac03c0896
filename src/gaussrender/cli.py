"""The ``gaussrender`` command line: one subcommand per module in :mod:`gaussrender.commands`.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int`` and keeps its heavy imports inside ``run`` so that ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand name -> module; a module is listed here once it exists and works
COMMANDS: dict[str, str] = {
    "eval": "gaussrender.commands.eval",
    "demo": "gaussrender.commands.demo",
    "train": "gaussrender.commands.train",
    "predict": "gaussrender.commands.predict",
    "view": "gaussrender.commands.view",
    "prepare": "gaussrender.commands.prepare",
}


def _version() -> str:
    """The installed distribution's version (without importing the package and torch)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gaussrender")
    except PackageNotFoundError:
        return "0+unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gaussrender",
        description="GaussRender: 3D occupancy supervised by differentiable Gaussian rendering.",
    )
    parser.add_argument("--version", action="version", version=f"gaussrender {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(
            name, help=module.HELP, description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; a refused, corrupt or missing input file is reported as one ``error:``
    line with exit code 2."""
    from .data.files import DataFileError

    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except DataFileError as err:
        # the message names the file and what is wrong with it: no traceback needed
        print(f"gaussrender {args.command}: error: {err}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:
        # a file the input names is missing (e.g. one sample's label file): name it, no traceback
        what = f"{err.strerror}: {err.filename}" if err.filename else str(err).strip("'\"")
        print(f"gaussrender {args.command}: error: {what}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
