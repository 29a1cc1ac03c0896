"""Count host synchronisations issued by gaussrender code (see tests/test_checks_sync.py)."""

from __future__ import annotations

import collections
import os
import sys
from contextlib import contextmanager

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import gaussrender

SRC = os.path.dirname(os.path.abspath(gaussrender.__file__))

# ATen calls that read values back to the host or size their output from tensor values
_SYNC_OPS = {
    "aten._local_scalar_dense",  # .item(), bool(), float(), int() of a tensor
    "aten.nonzero",
    "aten.masked_select",
    "aten.unique_dim",
    "aten._unique2",
    "aten.unique_consecutive",
    "aten.bincount",  # CUDA sizes its output from max(input)
    "aten.equal",
    "aten.is_nonzero",
}


def _site() -> tuple[str, str] | None:
    """(module path relative to the package, function) of the innermost gaussrender frame."""
    frame = sys._getframe(2)
    while frame is not None:
        path = frame.f_code.co_filename
        if path.startswith(SRC + os.sep):
            return path[len(SRC) + 1 :].replace(os.sep, "/"), frame.f_code.co_name
        frame = frame.f_back
    return None


class SyncCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.sites: collections.Counter = collections.Counter()
        #: every ATen call per (file, function): shows which code the mode observed
        self.ops: collections.Counter = collections.Counter()

    def record(self, what: str) -> None:
        site = _site()
        if site is not None:
            self.sites[(site[0], site[1], what)] += 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = str(func.overloadpacket)
        name = name if name.startswith("aten.") else "aten." + name
        site = _site()
        if site is not None:
            self.ops[site] += 1
        if name in _SYNC_OPS:
            self.record(name.split(".")[1])
        elif name == "aten.repeat_interleave" and kwargs.get("output_size") is None and (
            len(args) < 2 or isinstance(args[0], torch.Tensor)
        ) and func.__name__.startswith("repeat_interleave.Tensor"):
            self.record("repeat_interleave")
        elif name in ("aten.index", "aten.index_put", "aten.index_put_", "aten._index_put_impl_"):
            indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
            if any(i is not None and i.dtype in (torch.bool, torch.uint8) for i in indices):
                self.record("bool_index")
        return func(*args, **kwargs)


@contextmanager
def count_syncs():
    """Yield a :class:`SyncCounter` whose ``sites`` maps (file, function, op) to counts."""
    counter = SyncCounter()
    originals = {name: getattr(torch.Tensor, name) for name in ("tolist", "numpy", "cpu", "to")}

    def wrap(name):
        orig = originals[name]

        def patched(self, *args, **kwargs):
            if name == "to":
                # a download names the host literally; ``.to(device)`` with a device object is
                # the input's own device in this code (an upload, or a no-op)
                target = kwargs.get("device", args[0] if args else None)
                if isinstance(target, str) and torch.device(target).type == "cpu":
                    counter.record("to_cpu")
            else:
                counter.record(name)
            return orig(self, *args, **kwargs)

        return patched

    for name in originals:
        setattr(torch.Tensor, name, wrap(name))
    try:
        with counter:
            yield counter
    finally:
        for name, orig in originals.items():
            setattr(torch.Tensor, name, orig)
