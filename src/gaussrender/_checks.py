"""Input validation shared by the public functions.

Every public entry point checks its arguments here and raises ``TypeError`` or
``ValueError`` naming the argument, the expected shape/dtype/range and what it got.

Two kinds of checks:

* cheap ones (Python scalars, shapes, dtypes, devices) always run;
* value checks on tensors (NaN/inf, ranges, rigidity) read the tensor back to the host, a
  device synchronisation that :func:`set_checks` ``(False)`` turns off in hot loops.

Bounds (metres; chosen so that float32, the precision every backend computes in at least,
stays meaningful and finite):

* :data:`MAX_COORDINATE` = 1e6 m for Gaussian centres and camera translations: float32
  spacing at 1e6 is 0.0625 m, already a third of the finest preset's Gaussian scale
  (0.1 m, KITTI-360), so farther coordinates cannot place a Gaussian to within its own size;
  and camera depths (<= ~3.5e6 m) summed over millions of pixels stay far from overflow.
* :data:`MAX_SCALE` = 1e4 m for a Gaussian's standard deviation (a Gaussian wider than
  10 km in a scene of <= 1e6 m is a unit error); the projected covariance is bounded
  separately by :func:`gaussrender.render`, which knows the cameras.
"""

from __future__ import annotations

import functools
import math
import numbers
import os
from collections.abc import Sequence

import torch

__all__ = [
    "MAX_COORDINATE",
    "MAX_SCALE",
    "LOW_PRECISION",
    "FootprintError",
    "check_tensor",
    "check_shape",
    "check_finite",
    "check_floating",
    "check_integer",
    "check_real",
    "check_int",
    "check_rigid",
    "check_intrinsics",
    "compute_dtype",
    "checks_enabled",
    "set_checks",
    "set_memory_limit",
    "memory_limit",
    "check_memory",
    "image_bytes",
    "render_bytes",
    "GIB",
]

_ENABLED = True

#: Largest |coordinate| accepted for Gaussian centres and camera translations, metres.
MAX_COORDINATE = 1e6
#: Largest Gaussian standard deviation accepted, metres.
MAX_SCALE = 1e4
#: float16 and bfloat16 are computed in float32 (their 10/7-bit mantissas cannot hold pixel
#: coordinates, depths and transmittance products), and the results cast back.
LOW_PRECISION = (torch.float16, torch.bfloat16)
GIB = float(1 << 30)


def set_checks(enabled: bool) -> None:
    """Turn the costly value checks (NaN/inf, ranges, label values, camera rigidity) on or off.

    Shape, dtype, device and Python-scalar checks are cheap and always run, and so does the
    memory footprint check on the CPU (host arithmetic). Value checks on tensors need a
    device synchronisation, which hot training loops may want to skip once the pipeline is
    known to be sound. With checks off, ``GaussRenderLoss`` and ``render`` read no tensor
    value back to the host (no ``.item()``, ``bool(tensor)``, download, or GPU free-memory
    query); what remains are the syncs of data-dependent sizes, which no switch can remove:
    one ``nonzero`` per :func:`~gaussrender.voxels_to_gaussians` call and, in the torch
    backend, the (Gaussian, tile) binning and the depth-round loop
    (``tests/test_checks_sync.py`` counts them). ``GaussRenderLoss``'s NaN guard is off too:
    a NaN then reaches the loss whatever ``on_nan`` says.
    """
    global _ENABLED
    _ENABLED = bool(enabled)


def checks_enabled() -> bool:
    return _ENABLED


def check_tensor(name: str, x: object) -> torch.Tensor:
    """``x`` must be a tensor with values: meta-device tensors (shape only) are refused."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.is_meta:
        raise ValueError(
            f"{name} is a meta-device tensor (a shape without values); expected a tensor on a real device (cpu, cuda)"
        )
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
        raise ValueError(f"{name} must have shape {_shape_str(expected)}, got {list(x.shape)}")
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
                    f"{name} must have shape {_shape_str(expected)}, got {list(x.shape)} (size {want} is inconsistent)"
                )
            sizes[str(want)] = int(got)
    return sizes


def check_floating(name: str, x: torch.Tensor) -> torch.Tensor:
    """``x`` must be a real floating-point tensor (complex, integer and bool are refused)."""
    check_tensor(name, x)
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (real, not complex), got dtype {x.dtype}")
    return x


def check_integer(name: str, x: torch.Tensor) -> torch.Tensor:
    check_tensor(name, x)
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor (uint8/int32/int64), got dtype {x.dtype}")
    return x


def check_finite(name: str, x: torch.Tensor, max_abs: float | None = None, unit: str = "") -> torch.Tensor:
    """Values must be finite (and ``|x| <= max_abs`` when given); one host read-back.

    Skipped under :func:`set_checks` ``(False)``.
    """
    if not (_ENABLED and x.is_floating_point() and x.numel()):
        return x
    xd = x.detach()
    if max_abs is None:
        # a sum is finite when every value is (NaN and inf propagate) and costs one read;
        # isfinite allocates |x| and two masks. Only a sum that overflows (values near the
        # dtype's range) falls through to the exact test.
        if bool(torch.isfinite(xd.sum())) or bool(torch.isfinite(xd).all()):
            return x
        n_bad = int((~torch.isfinite(xd)).sum())
        raise ValueError(f"{name} contains {n_bad} NaN/inf value(s); expected finite values")
    n_nonfinite, n_big, largest = torch.stack(
        [
            (~torch.isfinite(xd)).sum().to(torch.float64),
            (xd.abs() > max_abs).sum().to(torch.float64),
            torch.nan_to_num(xd.abs(), nan=0.0, posinf=0.0).amax().to(torch.float64),
        ]
    ).tolist()
    if n_nonfinite:
        raise ValueError(f"{name} contains {int(n_nonfinite)} NaN/inf value(s); expected finite values")
    if n_big:
        unit = f" {unit}" if unit else ""
        raise ValueError(
            f"{name} must satisfy |value| <= {max_abs:g}{unit}; {int(n_big)} value(s) exceed it "
            f"(largest {largest:.3g}{unit})"
        )
    return x


def _range_str(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return " and ".join(parts)


def check_real(
    name: str,
    value: object,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    unit: str = "",
) -> float:
    """A finite Python/NumPy real number (not bool, complex or tensor) in the given range.

    Returns it as a ``float``. Always checked (no device involved).
    """
    unit = f" {unit}" if unit else ""
    want = "a finite real number" + (
        f" {_range_str(low, high, low_open, high_open)}" if low is not None or high is not None else ""
    )
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {want}{unit}, got {value!r} ({type(value).__name__})")
    v = float(value)
    bad = not math.isfinite(v)
    if low is not None:
        bad = bad or (v <= low if low_open else v < low)
    if high is not None:
        bad = bad or (v >= high if high_open else v > high)
    if bad:
        raise ValueError(f"{name} must be {want}{unit}, got {value!r}")
    return v


def check_int(name: str, value: object, low: int | None = None, high: int | None = None, unit: str = "") -> int:
    """A Python/NumPy integer (not bool, not a float such as ``2.0``) in ``[low, high]``."""
    unit = f" {unit}" if unit else ""
    want = "an int" + (f" {_range_str(low, high, False, False)}" if low is not None or high is not None else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {want}{unit}, got {value!r} ({type(value).__name__})")
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        raise ValueError(f"{name} must be {want}{unit}, got {v}")
    return v


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The precision a computation on ``dtype`` inputs runs in: float64 stays, anything
    else (float16, bfloat16, float32) runs in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _host64(x: torch.Tensor) -> torch.Tensor:
    """A float64 copy on the CPU: the small matrices checked here are read back once."""
    return x.detach().to(device="cpu", dtype=torch.float64)


def check_rigid(name: str, poses: torch.Tensor) -> torch.Tensor:
    """Rigid transforms ``[..., 4, 4]``: proper rotation, translation, last row ``[0, 0, 0, 1]``.

    The dtype is checked always; values (finite, ``|translation| <= MAX_COORDINATE`` m,
    orthonormal rotation with positive determinant) unless checks are off. The check runs
    in float64; the orthonormality tolerance is ``max(1e-3, 4 eps)`` of the input dtype, so
    a rotation rounded to bfloat16 (eps 2^-7; rounding moves R Rᵀ by about eps) or composed
    in it still passes, while one scaled by 5% does not.
    """
    check_floating(name, poses)
    if poses.dim() < 2 or tuple(poses.shape[-2:]) != (4, 4):
        raise ValueError(f"{name} must have shape [..., 4, 4], got {list(poses.shape)}")
    if not _ENABLED or poses.numel() == 0:
        return poses
    w = _host64(poses).reshape(-1, 4, 4)
    if not bool(torch.isfinite(w).all()):
        n_bad = int((~torch.isfinite(w)).sum())
        raise ValueError(f"{name} contains {n_bad} NaN/inf value(s); expected finite values")
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=w.dtype)
    tol = max(1e-3, 4.0 * torch.finfo(poses.dtype).eps)
    if not torch.allclose(w[:, 3], bottom.expand_as(w[:, 3]), atol=tol, rtol=0.0):
        raise ValueError(f"{name} must have last row [0, 0, 0, 1], got e.g. {w[0, 3].tolist()}")
    rot = w[:, :3, :3]
    err = float((rot @ rot.transpose(1, 2) - torch.eye(3, dtype=w.dtype)).abs().amax())
    if err > tol or bool((torch.linalg.det(rot) < 0).any()):
        raise ValueError(
            f"{name} must be rigid (a proper rotation and a translation); its rotation deviates "
            f"from orthonormal by {err:.2e} (tolerance {tol:.1e} for {poses.dtype}) or mirrors"
        )
    largest = float(w[:, :3, 3].abs().amax())
    if largest > MAX_COORDINATE:
        raise ValueError(f"{name} translations must satisfy |t| <= {MAX_COORDINATE:g} metres, got {largest:.3g}")
    return poses


#: Smallest |fx|, |fy| accepted, pixels (orthographic: pixels per metre): below it the
#: projection is singular for any practical purpose.
_MIN_FOCAL = 1e-6


def check_intrinsics(name: str, intrinsics: torch.Tensor) -> torch.Tensor:
    """Matrices ``[..., 3, 3]`` ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]`` with finite values
    and ``|fx|, |fy| >= 1e-6`` (negative: a mirrored image, as flip augmentation makes).

    The dtype is checked always (complex and integer matrices are refused), values unless
    checks are off.
    """
    check_floating(name, intrinsics)
    if intrinsics.dim() < 2 or tuple(intrinsics.shape[-2:]) != (3, 3):
        raise ValueError(f"{name} must have shape [..., 3, 3], got {list(intrinsics.shape)}")
    if not _ENABLED or intrinsics.numel() == 0:
        return intrinsics
    k = _host64(intrinsics).reshape(-1, 3, 3)
    if not bool(torch.isfinite(k).all()):
        n_bad = int((~torch.isfinite(k)).sum())
        raise ValueError(f"{name} contains {n_bad} NaN/inf value(s); expected finite values")
    last_row = torch.tensor([0.0, 0.0, 1.0], dtype=k.dtype)
    if not torch.allclose(k[:, 2], last_row.expand_as(k[:, 2]), atol=1e-6, rtol=0.0):
        raise ValueError(f"{name} must have last row [0, 0, 1], got e.g. {k[0, 2].tolist()}")
    if bool((k[:, 1, 0].abs() > 1e-6).any()):
        raise ValueError(f"{name}[..., 1, 0] must be 0 (upper-triangular K)")
    focal = torch.stack([k[:, 0, 0], k[:, 1, 1]], dim=-1)
    # a negative focal length is a mirrored image (horizontal-flip augmentation maps
    # u -> W - u, hence fx -> -fx); only a (near-)zero one is degenerate
    small = focal.abs() < _MIN_FOCAL
    if bool(small.any()):
        raise ValueError(
            f"{name} are singular: fx and fy must satisfy |f| >= {_MIN_FOCAL:g} pixels "
            f"(negative = mirrored image), got (fx, fy) = {focal[small.any(-1)][:3].tolist()}"
        )
    return intrinsics


# ----------------------------------------------------------------------------------------
# Memory: refuse, by argument name, requests whose images cannot fit before allocating them.

_MEMORY_LIMIT: float | None = None


class FootprintError(ValueError, MemoryError):
    """A request whose estimated memory exceeds the limit; both a ValueError (a bad
    argument) and a MemoryError (for code that catches allocation failures)."""


def set_memory_limit(nbytes: float | None) -> None:
    """Override the memory the footprint checks compare against (bytes; ``math.inf`` turns
    them off; ``None`` restores the default: on the CPU the smallest of physical memory, the
    cgroup's memory limit and what the address-space limit (``ulimit -v``, RLIMIT_AS) leaves
    this process; free plus PyTorch-cached memory on a CUDA device)."""
    global _MEMORY_LIMIT
    if nbytes is not None and not (isinstance(nbytes, (int, float)) and nbytes == math.inf):
        nbytes = check_real("nbytes", nbytes, 0.0, low_open=True)
    _MEMORY_LIMIT = None if nbytes is None else float(nbytes)


def memory_limit(device: torch.device | str) -> float | None:
    """Bytes a request on ``device`` may use at most, or None when unknown."""
    if _MEMORY_LIMIT is not None:
        return _MEMORY_LIMIT
    device = torch.device(device)
    if device.type == "cuda":
        try:
            free, _ = torch.cuda.mem_get_info(device)
            # memory PyTorch's caching allocator holds but does not use is available too
            cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        except Exception:  # no driver, or a device that does not report
            return None
        return float(free + cached)
    if device.type == "cpu":
        return _host_memory()
    return None


def _host_memory() -> float | None:
    """The smallest of physical memory, the cgroup limit (both read once) and the
    address-space room RLIMIT_AS leaves (read at every call: it can change)."""
    limit = _physical_memory()
    room = _address_space_room()
    if room is not None:
        limit = room if limit is None else min(limit, room)
    return limit


def _cgroup_files() -> list[str]:
    """The memory-limit files of this process's cgroup and its ancestors (v2), and the v1 file."""
    files = []
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                if line.startswith("0::"):  # cgroup v2: "0::/path/of/the/group"
                    parts = [p for p in line[3:].strip().split("/") if p]
                    for i in range(len(parts), 0, -1):
                        files.append("/sys/fs/cgroup/" + "/".join(parts[:i]) + "/memory.max")
    except OSError:
        pass
    return files + ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]


@functools.lru_cache(maxsize=1)
def _physical_memory() -> float | None:
    """Physical memory, or the container's cgroup limit when smaller (read once)."""
    try:
        limit = float(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # not POSIX
        return None
    for path in _cgroup_files():
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < limit:  # "max" or a huge number: no limit
            limit = float(text)
    return limit


def _address_space_room() -> float | None:
    """Bytes RLIMIT_AS (``ulimit -v``) still lets this process map: the soft limit minus the
    address space already mapped (``/proc/self/statm``); None without such a limit."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError, AttributeError):  # not POSIX
        return None
    if soft == resource.RLIM_INFINITY or soft < 0:
        return None
    used = 0.0
    try:
        with open("/proc/self/statm") as f:
            used = float(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    return max(float(soft) - used, 0.0)


def image_bytes(views: int, height: int, width: int, channels: int, itemsize: int) -> int:
    """Bytes of one set of rendered images: features, depth and alpha, ``V·H·W·(C + 2)``."""
    return views * height * width * (channels + 2) * itemsize


def render_bytes(views: int, height: int, width: int, channels: int, itemsize: int) -> int:
    """A lower bound on the memory one :func:`gaussrender.render` call holds at once.

    Counted: the blending buffers (features, depth, transmittance: ``C + 2`` values per
    pixel), the output images (``C + 2`` more) and the two int64 pixel maps of the tile
    layout, on images padded to whole 16-pixel tiles. Not counted (so that the bound is
    never above the truth): (Gaussian, tile) pairs, per-round working buffers, gradients.
    """
    ph, pw = -(-height // 16) * 16, -(-width // 16) * 16
    return 2 * image_bytes(views, ph, pw, channels, itemsize) + views * ph * pw * 16


def check_memory(name: str, nbytes: float, device: torch.device | str, what: str, advice: str | None = None) -> None:
    """Raise :class:`FootprintError` naming ``name`` when ``nbytes`` exceed the limit.

    Pure host arithmetic on the CPU: runs even with checks off. On other devices the limit
    is a driver query (free memory), skipped under :func:`set_checks` ``(False)`` unless
    :func:`set_memory_limit` gave a number. ``advice`` (default ``"reduce <name>"``) ends
    the message.
    """
    if not _ENABLED and _MEMORY_LIMIT is None and torch.device(device).type != "cpu":
        return
    limit = memory_limit(device)
    if limit is not None and nbytes > limit:
        raise FootprintError(
            f"{name}: {what} needs at least {nbytes / GIB:.3g} GiB but {limit / GIB:.3g} GiB "
            f"are available on {torch.device(device)}; {advice or 'reduce ' + name} "
            "(or raise the limit with gaussrender._checks.set_memory_limit)"
        )
