"""``gr.set_checks(False)`` removes every per-step host synchronisation from the loss's hot path.

A host synchronisation is any operation whose result the host must wait for: a tensor value
read into Python (``.item()``, ``bool()``, ``float()``, ``int()``, ``.tolist()``,
``.numpy()``), a download (``.cpu()``, ``.to("cpu")``), and operations whose *output shape*
depends on tensor values (``nonzero``, boolean-mask indexing, ``masked_select``,
``repeat_interleave`` without ``output_size``, ``unique``; ``bincount``, whose CUDA kernel
reads the maximum). On the CPU nothing waits, so the test counts these operations where they
are issued: a ``TorchDispatchMode`` sees every ATen call (``_local_scalar_dense`` is what all
the scalar reads lower to), Python patches see ``tolist``/``numpy``/``cpu``/``to``; each is
attributed to the innermost frame inside ``src/gaussrender``.

What remains with checks off, and why (counted exactly below):

* ``gaussians.build_predictions`` and ``build_gaussians`` (behind ``voxels_to_gaussians``): one
  ``nonzero`` per prediction and per ground truth
  (which voxels become Gaussians is data; their count sizes every later tensor);
* ``render._project.splat``, per set of Gaussians of a render call (one per sample):
  ``nonzero`` of the visible (view, Gaussian) pairs;
* ``render._project.bin_splats``, per render call (the loss makes four, whatever the batch
  size: camera and BEV views, prediction and ground truth): ``repeat_interleave`` of the tile
  counts, ``bincount`` of the tile ids (the number of pairs is data);
* ``render._torch._Rasterize.forward``, per render call: one ``nonzero`` per depth round plus
  one (the loop over depth rounds stops when no tile has work: a data-dependent trip count).
  The backward pass issues none. The triton backend shares ``splat`` and ``bin_splats`` and
  has no round loop.

Not counted, because on the CPU they cannot be told apart from no-ops: host-to-device copies
of constants (``torch.tensor(..., device=d)``, a stream synchronisation on CUDA). The loss
path avoids them (BEV camera cached, intrinsics rescaled only when ``resolution_divisor`` is
not 1, camera draw uploaded with ``non_blocking=True``); the camera strategies other than
``sensor`` still upload a few constants per call.
"""

import collections
import os
import sys
import warnings
from contextlib import contextmanager

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import gaussrender as gr
from gaussrender.render import _torch

# ---- the counter ------------------------------------------------------------

SRC = os.path.dirname(os.path.abspath(gr.__file__))

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
        elif func.__name__ == "repeat_interleave.Tensor" and kwargs.get("output_size") is None:
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


# ---- the tests --------------------------------------------------------------


GRID = gr.VoxelGrid(
    name="sync_toy",
    range_min=(-4.0, -4.0, -1.0),
    range_max=(4.0, 4.0, 1.0),
    voxel_size=0.5,
    shape=(16, 16, 4),
    class_names=("free", "car", "road"),
    empty_index=0,
)
HOT_PATH = {
    "losses/render/loss.py",
    "losses/render/inputs.py",
    "losses/render/cameras.py",
    "losses/render/renders.py",
    "losses/render/terms.py",
    "render/gaussians.py",
    "geometry/cameras.py",
    "_checks.py",
    "render/dispatch.py",
    "geometry/camera_strategies.py",
    "geometry/rigs.py",
    "geometry/grid.py",
}


@pytest.fixture(autouse=True)
def _restore_checks():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny renders: one thread is faster
    yield
    gr.set_checks(True)
    torch.set_num_threads(before)


def _batch():
    g = torch.Generator().manual_seed(0)
    labels = torch.zeros(2, *GRID.shape, dtype=torch.long)
    labels[:, :, :, 0] = 2
    labels[:, 10:13, 5:9, 0:2] = 1
    labels[0, 0, 0, 0] = 255
    logits = torch.randn(2, 3, *GRID.shape, generator=g, requires_grad=True)
    k = torch.tensor([[20.0, 0, 16], [0, 20, 12], [0, 0, 1]]).expand(2, 2, 3, 3).contiguous()
    eye = torch.tensor([[0.0, 0, 0.5], [0.0, 0, 0.5]])
    pose = gr.look_at(eye, torch.tensor([[1.0, 0, 0.5], [-1.0, 0, 0.5]])).expand(2, 2, 4, 4).contiguous()
    return logits, labels, k, pose


def _run(monkeypatch):
    """One forward + backward of the loss under the counter; also counts, per torch-backend
    render call, its depth rounds (the trip count of the rasteriser's loop)."""
    rounds: list[set[int]] = []
    in_forward = [False]
    rasterize, make_slice = _torch.rasterize_torch, _torch._make_slice

    def counting_render(*args, **kwargs):
        rounds.append(set())
        in_forward[0] = True
        try:
            return rasterize(*args, **kwargs)
        finally:
            in_forward[0] = False

    def counting_slice(plan, tiles, start, t_in, done_in):
        if in_forward[0]:
            rounds[-1].add(start)
        return make_slice(plan, tiles, start, t_in, done_in)

    monkeypatch.setattr(_torch, "rasterize_torch", counting_render)
    monkeypatch.setattr(_torch, "_make_slice", counting_slice)
    logits, labels, k, pose = _batch()
    loss = gr.GaussRenderLoss(GRID, bev_size=24, seed=0, backend="torch")
    with count_syncs() as counter:
        out = loss(logits, labels, k, pose, (24, 32))
        out["loss"].backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    return counter, rounds


def test_checks_off_leaves_only_the_data_dependent_sizes(monkeypatch):
    gr.set_checks(False)
    counter, rounds = _run(monkeypatch)
    # the counter saw the backward pass too (it issues no sync of its own)
    assert counter.ops[("render/_torch.py", "backward")] > 0
    renders = len(rounds)
    assert renders == 2 * 2  # (camera, BEV) x (prediction, ground truth): the batch in one call
    expected = {
        ("render/gaussians.py", "build_predictions", "nonzero"): 2,  # per sample: its prediction
        ("render/gaussians.py", "build_gaussians", "nonzero"): 2,  # per sample: its ground truth
        ("render/_project.py", "splat", "nonzero"): 2 * renders,  # per sample of each call
        ("render/_project.py", "bin_splats", "repeat_interleave"): renders,
        ("render/_project.py", "bin_splats", "bincount"): renders,
        ("render/_torch.py", "forward", "nonzero"): sum(len(r) + 1 for r in rounds),
    }
    assert dict(counter.sites) == expected
    assert not [
        site
        for site in counter.sites
        if site[0] in HOT_PATH and site[1] not in ("build_gaussians", "build_predictions")
    ]


def test_checks_on_reads_values_back(monkeypatch):
    # the same run with checks on: the counter does see the value checks (it can fail)
    counter, _ = _run(monkeypatch)
    checked = {site[:2] for site in counter.sites}
    for where in [
        ("_checks.py", "check_rigid"),
        ("_checks.py", "check_intrinsics"),
        ("_checks.py", "check_finite"),
        ("render/gaussians.py", "check_labels"),
        ("render/dispatch.py", "_check_covariance_range"),
        ("losses/render/loss.py", "_guard_nan"),
    ]:
        assert where in checked, where


def test_checks_off_lets_nan_through_the_loss():
    logits, labels, k, pose = _batch()
    bad = logits.detach().clone()
    bad[0, 0, 5, 5, 1] = float("nan")
    loss = gr.GaussRenderLoss(GRID, views=("bev",), bev_size=16)
    with pytest.raises(ValueError, match="logits"):
        loss(bad, labels)
    gr.set_checks(False)
    out = loss(bad, labels)  # on_nan="raise" cannot be honoured without reading the terms
    assert torch.isnan(out["loss"])


def test_camera_views_without_cameras_raise_or_warn():
    logits, labels, k, pose = _batch()
    with pytest.raises(ValueError, match="intrinsics and cam_from_grid"):
        gr.GaussRenderLoss(GRID, views=("cam",))(logits, labels)
    with pytest.warns(UserWarning, match="only the BEV"):
        out = gr.GaussRenderLoss(GRID, bev_size=16)(logits, labels)
    assert out["cam"] == 0 and out["bev"] > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gr.GaussRenderLoss(GRID, views=("bev",), bev_size=16)(logits, labels)
        gr.GaussRenderLoss(GRID, views=("cam",))(logits, labels, k, pose, (24, 32))
