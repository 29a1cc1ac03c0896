"""What ``gaussrender train --print-config`` prints: the resolved config, each value marked with
where it came from, and the render loss's effective options.

Every leaf of the resolved config is printed with a trailing comment: ``# file`` (written in
the config file), ``# --set`` (a command-line override) or ``# default`` (not in the file: the
schema's default, :mod:`gaussrender.train.config_schema`); the info files also say where they
are read from (a relative path follows ``data.root``). Comments keep the output a YAML file
that loads back to the same config. Below it, as comments (they are not config keys), every
option of the :class:`~gaussrender.GaussRenderLoss` the trainer builds
(:class:`~gaussrender.RenderLossOptions`), with its effective value and what set it: the
trainer (``weight`` from ``loss.render_weight``, ``on_nan``), ``loss.render_kwargs`` (file or
``--set``), or the loss's default (``camera_strategy`` and ``scale`` defaults resolved to the
grid's).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from .config import config_to_dict, resolve_config
from .config_schema import Config

__all__ = ["config_sources", "format_config"]

Source = str  # "file", "--set" or "default"


def _file_values(spec: str | os.PathLike) -> dict:
    """The config file's own mapping (already validated by ``load_config``)."""
    values = yaml.safe_load(resolve_config(spec).read_text(encoding="utf-8"))
    return values if isinstance(values, dict) else {}


def _lookup(tree: Any, parts: Sequence[str]) -> bool:
    for p in parts:
        if not isinstance(tree, dict) or p not in tree:
            return False
        tree = tree[p]
    return True


def config_sources(
    cfg: Config, spec: str | os.PathLike, overrides: Sequence[str] = ()
) -> tuple[dict, dict[str, Source]]:
    """``(plain config dict, {dotted key: "file" | "--set" | "default"})`` for every leaf.

    A key is ``--set`` when an override names it or one of its parents, ``file`` when the
    file holds it, else ``default``. The entries of a mapping-valued key (``loss.render_kwargs``)
    are leaves of their own.
    """
    file_values = _file_values(spec)
    overridden = [item.split("=", 1)[0].strip() for item in overrides if "=" in item]
    plain = config_to_dict(cfg)
    sources: dict[str, Source] = {}

    def walk(node: dict, prefix: tuple[str, ...]) -> None:
        for key, value in node.items():
            parts = (*prefix, str(key))
            dotted = ".".join(parts)
            if isinstance(value, dict) and value:
                walk(value, parts)
                continue
            if any(dotted == k or dotted.startswith(k + ".") for k in overridden):
                sources[dotted] = "--set"
            elif _lookup(file_values, parts):
                sources[dotted] = "file"
            else:
                sources[dotted] = "default"

    walk(plain, ())
    return plain, sources


def _scalar(value: Any) -> str:
    """``value`` as one line of YAML flow style."""
    text = yaml.safe_dump([value], default_flow_style=True, width=1 << 16).strip()
    return text[1:-1]


def _render_loss_lines(cfg: Config, sources: dict[str, Source]) -> list[str]:
    from ..geometry.grid import get_grid
    from ..losses.render import RenderLossOptions

    grid = get_grid(cfg.data.grid)
    kwargs = dict(cfg.loss.render_kwargs)
    options = RenderLossOptions().with_overrides(weight=cfg.loss.render_weight, on_nan="raise", **kwargs)
    state = "built" if cfg.loss.render else "not built: loss.render is false"
    lines = [f"# GaussRenderLoss options the trainer uses ({state}; RenderLossOptions, every field):", "# render_loss:"]
    for field in dataclasses.fields(RenderLossOptions):
        value = getattr(options, field.name)
        if field.name == "weight":
            why = f"loss.render_weight ({sources.get('loss.render_weight', 'default')})"
        elif field.name == "on_nan":
            why = "the trainer (loss.nonfinite handles a NaN step)"
        elif field.name in kwargs:
            why = f"loss.render_kwargs ({sources.get(f'loss.render_kwargs.{field.name}', 'file')})"
        else:
            why = "GaussRenderLoss default"
            if field.name == "camera_strategy" and value is None:
                why += f": the grid's, {grid.camera_strategy!r}"
            elif field.name == "scale" and value is None:
                why += f": the grid's Gaussian scale, {grid.gaussian_scale} m"
        lines.append(f"#   {field.name}: {_scalar(value)}  # {why}")
    return lines


def _read_from(cfg: Config, parts: tuple[str, ...], value: Any) -> str:
    """For ``data.train_infos`` / ``data.val_infos``: where the file is read (relative paths
    follow ``data.root``, :func:`~gaussrender.train.builders.resolve_infos`)."""
    if parts[:1] != ("data",) or parts[-1] not in ("train_infos", "val_infos") or not value:
        return ""
    if cfg.data.synthetic is not None or cfg.data.format == "kitti360":
        return " (not read: " + ("synthetic data" if cfg.data.synthetic is not None else "KITTI-360 needs none") + ")"
    path = Path(value)
    return f"; read from {path if path.is_absolute() else Path(cfg.data.root) / path}"


def format_config(cfg: Config, spec: str | os.PathLike, overrides: Sequence[str] = ()) -> str:
    """The text ``--print-config`` prints (see the module docstring)."""
    plain, sources = config_sources(cfg, spec, overrides)
    lines = [
        f"# the resolved config of {os.fspath(spec)!r}: each value's source is file (the config file), --set (an",
        "# override) or default (not in the file: gaussrender.train.config_schema's default)",
    ]

    def emit(node: dict, prefix: tuple[str, ...], depth: int) -> None:
        pad = "  " * depth
        for key, value in node.items():
            parts = (*prefix, str(key))
            if isinstance(value, dict) and value:
                lines.append(f"{pad}{key}:")
                emit(value, parts, depth + 1)
            else:
                note = _read_from(cfg, parts, value)
                lines.append(f"{pad}{key}: {_scalar(value)}  # {sources['.'.join(parts)]}{note}")

    emit(plain, (), 0)
    lines += _render_loss_lines(cfg, sources)
    return "\n".join(lines) + "\n"
