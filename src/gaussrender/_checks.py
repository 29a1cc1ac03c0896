"""Input validation shared by the public functions.

Every public entry point checks its arguments here and raises ``TypeError`` or
``ValueError`` naming the argument, the expected shape/dtype/range and what it got.
"""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = [
    "check_tensor",
    "check_shape",
    "check_finite",
    "check_floating",
    "check_integer",
    "checks_enabled",
    "set_checks",
]

_ENABLED = True


def set_checks(enabled: bool) -> None:
    """Turn the costly value checks (NaN/inf, label ranges) on or off.

    Shape and dtype checks are cheap and always run. Value checks need a device
    synchronisation, which hot training loops may want to skip once the pipeline is known
    to be sound.
    """
    global _ENABLED
    _ENABLED = bool(enabled)


def checks_enabled() -> bool:
    return _ENABLED


def check_tensor(name: str, x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def _shape_str(shape: Sequence[object]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def check_shape(name: str, x: torch.Tensor, expected: Sequence[object]) -> dict[str, int]:
    """Check ``x.shape`` against ``expected``: ints are exact, strings are named sizes.

    A named size that appears twice must match; the returned dict maps names to sizes.
    Example: ``check_shape("means", means, ["N", 3])``.
    """
    check_tensor(name, x)
    if x.dim() != len(expected):
        raise ValueError(
            f"{name} must have shape {_shape_str(expected)}, got {list(x.shape)}"
        )
    sizes: dict[str, int] = {}
    for dim, (want, got) in enumerate(zip(expected, x.shape)):
        if isinstance(want, int):
            if got != want:
                raise ValueError(
                    f"{name} must have shape {_shape_str(expected)}, got {list(x.shape)}"
                    f" (dimension {dim} should be {want})"
                )
        else:
            if want in sizes and sizes[want] != got:
                raise ValueError(
                    f"{name} must have shape {_shape_str(expected)}, got {list(x.shape)}"
                    f" (size {want} is inconsistent)"
                )
            sizes[str(want)] = int(got)
    return sizes


def check_floating(name: str, x: torch.Tensor) -> torch.Tensor:
    check_tensor(name, x)
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def check_integer(name: str, x: torch.Tensor) -> torch.Tensor:
    check_tensor(name, x)
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor (uint8/int32/int64), got dtype {x.dtype}")
    return x


def check_finite(name: str, x: torch.Tensor) -> torch.Tensor:
    if _ENABLED and x.is_floating_point() and x.numel() and not bool(torch.isfinite(x).all()):
        n_bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} contains {n_bad} NaN/inf value(s); expected finite values")
    return x
