"""Training configuration: frozen dataclasses read from small YAML files.

A YAML file maps one to one onto :class:`Config` (sections ``model``, ``data``, ``loss``,
``optim``, ``train``); unknown keys are errors, missing keys take the defaults below, which
are the papers' recipe (docs/method.md#loss). There is no inheritance between files: each file states
what differs from the defaults. Command-line overrides ``--set key.sub=value`` parse
``value`` as YAML (``--set optim.lr=1e-4``, ``--set data.image_size=[450,800]``).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
import stat
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

from .._io import atomic_write_text
from .._untrusted import MAX_YAML_DEPTH, MAX_YAML_NODES, YamlLimitError, brief, load_yaml
from .config_checks import ConfigError
from .config_checks import fail as _fail
from .config_checks import validate as _validate
from .config_schema import (
    AugmentConfig,
    Config,
    DataConfig,
    LossConfig,
    ModelSection,
    OptimConfig,
    SyntheticConfig,
    TrainSection,
)

__all__ = [
    "ModelSection",
    "AugmentConfig",
    "SyntheticConfig",
    "DataConfig",
    "LossConfig",
    "OptimConfig",
    "TrainSection",
    "Config",
    "ConfigError",
    "load_config",
    "config_names",
    "resolve_config",
    "apply_overrides",
    "config_to_dict",
    "config_from_dict",
    "save_config",
]


def _convert(tp: Any, value: Any, where: str) -> Any:
    """Coerce a YAML value to the annotated type ``tp``; raise naming ``where`` otherwise."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, where)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):  # a dataclass type, not an instance
        if not isinstance(value, dict):
            raise _fail(where, "expected a mapping", value)
        return _build(tp, value, where)
    if origin is Literal:
        if isinstance(value, bool) or value not in args:
            raise _fail(where, f"expected one of {list(args)}", value)
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _fail(where, "expected a list", value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise _fail(where, f"expected a list of {len(args)} items", value)
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise _fail(where, "expected a mapping", value)
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise _fail(where, "expected true or false", value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(where, "expected an integer", value)
        return value
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads "5e-4" (no dot) as a string; accept what float() accepts
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(where, "expected a number", value)
        try:
            return float(value)
        except OverflowError:  # an integer beyond the float range
            raise _fail(where, "expected a number within the float range", value) from None
    if tp is str:
        if not isinstance(value, str):
            raise _fail(where, "expected a string", value)
        return value
    raise TypeError(f"{where}: unsupported config type {tp!r}")


def _build(cls: type, values: dict, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(brief(k, 40) if not isinstance(k, str) else k[:40] for k in set(values) - names)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        shown = ", ".join(repr(k) for k in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise ConfigError(f"{key}: unknown key(s) [{shown}] in {where or 'config'}; allowed: {sorted(names)}", key)
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}" if where else k) for k, v in values.items()}
    return cls(**kwargs)


def config_from_dict(values: dict) -> Config:
    """Build a :class:`Config` from nested dicts (as read from YAML), validating every key.

    Raises:
        ConfigError: an unknown key, a value of the wrong type or out of its range; the
            message names the dotted key, what was expected and the value.
    """
    if not isinstance(values, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(values).__name__}")
    cfg = _build(Config, values, "")
    _validate(cfg)
    return cfg


# every numeric setting checked when the config is built, so that a run never starts with
# a value that can only produce garbage (an infinite learning rate trains to inf weights)
def config_to_dict(cfg: Config) -> dict:
    """Nested plain dicts/lists (YAML-safe) of a config."""

    def plain(x: Any) -> Any:
        if dataclasses.is_dataclass(x):
            return {f.name: plain(getattr(x, f.name)) for f in dataclasses.fields(x)}
        if isinstance(x, (tuple, list)):
            return [plain(v) for v in x]
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        return x

    return plain(cfg)


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """Apply ``key.sub=value`` overrides (value parsed as YAML) to nested dicts, in place.

    Raises:
        ConfigError: a malformed override (no ``=``, an empty key part, a value that is not
            YAML, a key below a value that is not a section), naming the override.
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key.sub=value, got {brief(item)}")
        key, raw = item.split("=", 1)
        key = key.strip()
        parts = key.split(".")
        if len(key) > _MAX_SET_KEY or len(parts) > _MAX_SET_PARTS:
            raise ConfigError(
                f"--set key {brief(key, 60)}: expected at most {_MAX_SET_PARTS} dotted names and "
                f"{_MAX_SET_KEY} characters (config keys are like optim.lr)"
            )
        if not all(p.strip() for p in parts):
            raise ConfigError(f"--set key must be dotted names like optim.lr, got {key!r}")
        node = values
        for p in parts[:-1]:
            child = node.get(p)
            if child is None:
                child = node[p] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {p!r} is not a section", key)
            node = child
        try:
            node[parts[-1]] = load_yaml(raw)
        except YamlLimitError as err:
            raise ConfigError(f"--set {key}: the value {brief(raw, 40)}: {err}", key) from None
        except yaml.YAMLError as err:
            raise ConfigError(
                f"--set {key}: the value {brief(raw, 40)} is not valid YAML ({_yaml_problem(err)})", key
            ) from None
    return values


def _yaml_problem(err: yaml.YAMLError) -> str:
    """One line of a YAML error: its problem and position, without PyYAML's source excerpt."""
    problem = getattr(err, "problem", None)
    mark = getattr(err, "problem_mark", None)
    if problem is None:
        return str(err).splitlines()[0] if str(err) else type(err).__name__
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


_MAX_CONFIG_BYTES = 1 << 20  # a config is a few hundred bytes; refuse anything absurd
# every YAML document (the file and each --set value) is bounded by gaussrender._untrusted's
# limits while it is composed, before anything is built from it (alias bombs, deep nesting)
_MAX_CONFIG_NODES = MAX_YAML_NODES
_MAX_CONFIG_DEPTH = MAX_YAML_DEPTH
_MAX_SET_KEY = 200  # characters of a --set key (the longest real key is ~40)
_MAX_SET_PARTS = 8  # dotted names of a --set key (real keys have 2 or 3)


def config_names() -> list[str]:
    """Names of the configs shipped inside the package (``gaussrender/configs/<name>.yaml``), sorted."""
    folder = importlib.resources.files("gaussrender") / "configs"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def resolve_config(spec: str | os.PathLike) -> Path:
    """The file a ``--config`` value names: a path, or the name of a shipped config.

    An existing file, or anything that looks like a path (a folder separator or a
    ``.yaml``/``.yml`` suffix), is a path. Anything else is a name looked up among
    :func:`config_names` (``tpvformer_occ3d_render``) inside the installed package, so the
    configs work from a wheel, not only from a checkout.

    Raises:
        FileNotFoundError: a path that does not exist, or an unknown name (the message lists
            the shipped names).
    """
    text = os.fspath(spec)
    path = Path(text)
    if path.is_file() or "/" in text or os.sep in text or path.suffix in (".yaml", ".yml"):
        return path
    names = config_names()
    if text not in names:
        raise FileNotFoundError(
            f"config {brief(text)} is neither a file nor a shipped config name; shipped: {', '.join(names)}"
        )
    found = importlib.resources.files("gaussrender") / "configs" / f"{text}.yaml"
    # a wheel installs the package as plain files, so this is a real path on disk
    if not isinstance(found, os.PathLike):
        raise FileNotFoundError(f"shipped config {text!r} is not a file on disk: {found!r}")
    return Path(os.fspath(found))


def load_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config, apply ``--set`` overrides and validate it.

    Args:
        path: a YAML file, or the name of a shipped config (:func:`resolve_config`).
        overrides: ``key.sub=value`` strings, ``value`` parsed as YAML.

    Raises:
        FileNotFoundError: naming ``path`` when it does not exist (and listing the shipped
            names when it is not a path).
        ConfigError: (a ValueError) an unreadable or corrupt file, a malformed override,
            unknown keys, wrong types or values; the message names the file, and the key
            (marked ``(--set)`` when an override gave the value).
    """
    path = resolve_config(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config file ({err.strerror or err})") from None
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file (a FIFO, device or socket)"
        raise ConfigError(f"{path}: the config is {kind}; expected a YAML file")
    try:
        size = path.stat().st_size
        if size > _MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {size} bytes is not a config file (limit {_MAX_CONFIG_BYTES})")
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config file ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a UTF-8 text file ({err.reason} at byte {err.start})") from None
    try:
        values = load_yaml(text)
    except YamlLimitError as err:
        raise ConfigError(f"{path}: the YAML {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(err)}") from None
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections, got {type(values).__name__}")
    overridden = {item.split("=", 1)[0].strip() for item in overrides if "=" in item}
    try:
        return config_from_dict(apply_overrides(values, list(overrides)))
    except ConfigError as err:
        if str(err).startswith("--set"):
            raise
        by_set = err.key is not None and any(
            err.key == k or err.key.startswith(k + ".") or err.key.startswith(k + "[") for k in overridden
        )
        raise ConfigError(f"{path}: {err}{' (--set)' if by_set else ''}", err.key) from None


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config (every key, defaults included) as YAML."""
    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
