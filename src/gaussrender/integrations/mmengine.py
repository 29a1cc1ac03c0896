"""mmengine / mmdet3d integration: the loss and the rendered-view metric in the registries.

Importing this module registers, in mmengine's ``MODELS`` and ``METRICS`` (and in mmdet3d's
when ``mmdet3d`` is importable):

* ``GaussRenderLoss`` (:class:`GaussRenderLossMM`): build it from a config such as
  ``loss_render=dict(type='GaussRenderLoss', grid='occ3d', loss_weight=10.0)`` (mmdet's
  ``loss_weight`` or our ``weight``);
* ``RenderedViewMetrics`` (:class:`RenderedViewMetricMM`): an mmengine ``BaseMetric``
  around :class:`gaussrender.metrics.RenderedViewMetrics`, e.g.
  ``val_evaluator=dict(type='RenderedViewMetrics', grid='occ3d', image_scale=0.25)``.

mmdet3d data samples work as they are: :func:`cameras_from_samples` turns their metainfo
(``cam2img``, ``lidar2cam`` / ``ego2img``, ``img_shape``) into the loss's camera arguments, and
the metric reads the same keys (see :class:`RenderedViewMetricMM` for the keys and shapes).

Why a wrapper: mmengine's ``BaseModel.parse_losses`` sums every entry whose key contains
``"loss"``. :class:`gaussrender.GaussRenderLoss` returns the weighted total under ``"loss"``
*and* the unweighted terms, all differentiable: renamed ``loss_render_*`` they would be
counted twice (weight 11 instead of 10). :class:`GaussRenderLossMM` returns instead one
entry per term, **already weighted** (``loss_render_cam = weight · L_cam``, ...), and no
total, so ``parse_losses`` adds exactly ``weight · (L_cam + L_cam_depth + L_bev +
L_bev_depth)`` (the plain loss's ``out["loss"]``) and logs each weighted term. Only the
terms the options render are returned (no ``*_depth`` with ``depth=False``, no camera terms
with ``views=("bev",)``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, cast

import torch

try:
    from mmengine.evaluator import BaseMetric
    from mmengine.registry import METRICS, MODELS
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError("gaussrender.integrations.mmengine needs mmengine: pip install 'gaussrender[mmengine]'") from err

from ..geometry.grid import VoxelGrid, get_grid
from ..losses.render import TERMS, GaussRenderLoss
from ..metrics.rendered import RenderedViewMetrics
from ._samples import GRID_FRAMES, cameras_from_sample, cameras_from_samples, default_grid_frame, sample_value

__all__ = ["GaussRenderLossMM", "RenderedViewMetricMM", "register", "cameras_from_samples"]


class GaussRenderLossMM(GaussRenderLoss):
    """:class:`gaussrender.GaussRenderLoss` returning ``parse_losses``-safe entries.

    Args:
        grid, **kwargs: as :class:`gaussrender.GaussRenderLoss` (``weight``, ``views``,
            ``depth``, ``camera_strategy``, ...).
        prefix: names the entries ``prefix + term``; must contain ``"loss"`` so that
            ``parse_losses`` sums them (default ``"loss_render_"``).
        loss_weight: mmdet's name for ``weight`` (the factor of the terms, 10 by default);
            give one of the two.

    The camera arguments of a batch of mmdet3d data samples (``cam2img``, ``lidar2cam`` /
    ``ego2img``, ``img_shape`` in their metainfo) come from :func:`cameras_from_samples`, or
    pass the samples themselves: ``self.loss_render(logits, labels, data_samples=batch_data_samples)``
    (``grid_frame=`` for a grid that is not a preset).

    Returns (``forward``): ``{prefix + term: weight · term}`` for each rendered term; their
    sum is the plain loss's ``out["loss"]``, and each carries its own gradient once.
    """

    def __init__(
        self, grid: VoxelGrid | str, prefix: str = "loss_render_", loss_weight: float | None = None, **kwargs: Any
    ) -> None:
        if not isinstance(prefix, str) or "loss" not in prefix:
            raise ValueError(
                f"prefix must be a str containing 'loss' (mmengine's parse_losses sums only those keys), got {prefix!r}"
            )
        if loss_weight is not None:
            # mmdet's name for the factor; one of the two, never both
            if "weight" in kwargs:
                raise ValueError(
                    f"give loss_weight (mmdet's name) or weight, not both (got loss_weight={loss_weight!r}, "
                    f"weight={kwargs['weight']!r})"
                )
            kwargs["weight"] = loss_weight
        super().__init__(grid, prefix="", **kwargs)
        self.mm_prefix = prefix

    def forward(
        self, *args: Any, data_samples: Sequence[Any] | None = None, grid_frame: str | None = None, **kwargs: Any
    ) -> dict[str, torch.Tensor]:
        if data_samples is not None:
            # mmdet3d data samples: their metainfo gives the cameras (cameras_from_samples)
            if len(args) > 2 or any(k in kwargs for k in ("intrinsics", "cam_from_grid", "image_size")):
                raise ValueError("give the cameras (intrinsics, cam_from_grid, image_size) or data_samples, not both")
            device = args[0].device if args else kwargs["logits"].device
            cams = cameras_from_samples(data_samples, self.grid, grid_frame)
            kwargs.update(
                intrinsics=cams["intrinsics"].to(device),
                cam_from_grid=cams["cam_from_grid"].to(device),
                image_size=cams["image_size"],
            )
        out = super().forward(*args, **kwargs)
        opts = self.options
        terms = [t for t in TERMS if t.split("_")[0] in opts.views and (opts.depth or not t.endswith("_depth"))]
        weighted = {self.mm_prefix + t: opts.weight * out[t] for t in terms}
        # out["loss"] also holds a 0 · logits term that keeps the graph attached on empty
        # scenes; carry it (value 0, gradient 0) in the first entry so that backward() on
        # the parsed total behaves as on out["loss"]
        first = self.mm_prefix + terms[0]
        weighted[first] = weighted[first] + 0.0 * out["loss"]
        return weighted


class RenderedViewMetricMM(BaseMetric):
    """mmengine ``BaseMetric`` computing :class:`gaussrender.metrics.RenderedViewMetrics`.

    ``process`` renders and scores each sample of ``data_samples`` (the model's
    ``val_step``/``test_step`` outputs) and keeps its pixel counts (two ``[C, C]``
    confusion matrices and four sums, on the CPU); mmengine gathers these per-sample results
    across processes (dropping the samples a distributed sampler duplicated) and
    ``compute_metrics`` pools them, so the numbers equal one
    :class:`~gaussrender.metrics.RenderedViewMetrics` over the whole dataset.

    Each data sample (a dict, or an object with these attributes, e.g. mmdet3d's
    ``Det3DDataSample``; a key is looked up on the sample, then in its ``metainfo``) holds:

    =================  ======================  ===============================================
    key                shape                   what
    =================  ======================  ===============================================
    ``pred_key``       ``[X, Y, Z]`` int or    predicted labels (one-hot), or float logits
                       ``[C, X, Y, Z]`` float  (default key ``pred_occ``)
    ``logits_key``     ``[C, X, Y, Z]`` float  logits, scored instead of ``pred_key`` when the
                                               sample holds them (default ``pred_logits``)
    ``gt_key``         ``[X, Y, Z]`` int       ground truth, ignore index allowed (``gt_occ``)
    ``intrinsics``     ``[Ncam, 3, 3]``        pixels; or mmdet3d's ``cam2img`` (3x3 or 4x4)
    ``cam_from_grid``  ``[Ncam, 4, 4]``        grid -> OpenCV camera; or ``lidar2cam`` (LiDAR-
                                               frame grid) / ``ego2cam``, or ``lidar2img`` /
                                               ``ego2img`` with ``cam2img``
    ``image_size``     ``(H, W)``              pixels; or ``img_shape`` (else ``ori_shape``)
    =================  ======================  ===============================================

    Tensors, numpy arrays or nested lists are all accepted. Float logits are scored with the
    release's eval rule (soft features, opacity 1 where the argmax is not empty), integer
    labels one-hot.

    Args:
        grid: the labels' grid or preset name.
        pred_key, gt_key: names of the prediction and ground truth in a data sample.
        logits_key: name of the logits in a data sample, preferred to ``pred_key`` when
            present (``None``: always ``pred_key``).
        grid_frame: ``"ego"`` or ``"lidar"``, the frame of the grid, which picks the mmdet3d
            pose key; default: the grid's (Occ3D ego, SurroundOcc and KITTI-360 LiDAR).
        collect_device, prefix, collect_dir: as mmengine's ``BaseMetric``.
        **kwargs: passed to :class:`~gaussrender.metrics.RenderedViewMetrics`
            (``convention``, ``image_scale``, ``bev``, ``bev_size``, ``depth_min``, ``backend``).

    ``compute_metrics`` returns floats: ``image_iou``, ``image_miou``, ``depth_l1``,
    ``bev_iou``, ``bev_miou``, ``bev_depth_l1`` (NaN where undefined, see the metric).
    """

    default_prefix = "render"

    def __init__(
        self,
        grid: VoxelGrid | str,
        pred_key: str = "pred_occ",
        gt_key: str = "gt_occ",
        logits_key: str | None = "pred_logits",
        collect_device: str = "cpu",
        prefix: str | None = None,
        collect_dir: str | None = None,
        grid_frame: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        # the inner metric scores one sample at a time; mmengine does the gathering
        self._inner = RenderedViewMetrics(get_grid(grid), sync_on_compute=False, **kwargs)
        self.pred_key, self.gt_key, self.logits_key = pred_key, gt_key, logits_key
        frame = grid_frame if grid_frame is not None else default_grid_frame(grid)
        if frame is not None and frame not in GRID_FRAMES:
            raise ValueError(f"grid_frame must be one of {GRID_FRAMES} (the grid's frame), got {grid_frame!r}")
        self.grid_frame = frame

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        for sample in data_samples:
            self._inner.reset()
            pred = torch.as_tensor(sample_value(sample, self._pred_name(sample)))
            gt = torch.as_tensor(sample_value(sample, self.gt_key))
            cams = cameras_from_sample(sample, self.grid_frame)
            self._inner.update(
                pred[None],
                gt[None],
                intrinsics=cams["intrinsics"][None],
                cam_from_grid=cams["cam_from_grid"][None],
                image_size=cams["image_size"],
            )
            # torchmetrics types states as Tensor | list[Tensor]; RenderedViewMetrics registers only tensors
            state = cast(dict[str, torch.Tensor], self._inner.metric_state)
            self.results.append({k: v.detach().cpu().clone() for k, v in state.items()})

    def _pred_name(self, sample: Any) -> str:
        """``logits_key`` when the sample has it, else ``pred_key``."""
        key = self.logits_key
        has = key is not None and sample_value(sample, key, None) is not None
        return key if has and key is not None else self.pred_key

    def compute_metrics(self, results: list) -> dict[str, float]:
        self._inner.reset()
        for name in self._inner.metric_state:
            state = getattr(self._inner, name)
            for r in results:
                state.add_(r[name].to(state.device))
        with warnings.catch_warnings():
            # the states were filled here, not by update(): torchmetrics' "compute before
            # update" warning does not apply
            warnings.filterwarnings("ignore", message=".*compute.*before the ``update``", category=UserWarning)
            out = self._inner.compute()
        self._inner.reset()
        return {k: float(v) for k, v in out.items() if v.dim() == 0}


def _register(registry: Any, name: str, cls: type) -> None:
    current = registry.module_dict.get(name)
    if current is None:
        registry.register_module(name=name, module=cls)
    elif current is not cls:
        raise KeyError(f"{registry.name} registry already has a different {name!r}: {current!r}")


def register() -> None:
    """Register ``GaussRenderLoss`` and ``RenderedViewMetrics`` (runs on import; idempotent)."""
    _register(MODELS, "GaussRenderLoss", GaussRenderLossMM)
    _register(METRICS, "RenderedViewMetrics", RenderedViewMetricMM)
    try:
        from mmdet3d.registry import METRICS as MMDET3D_METRICS
        from mmdet3d.registry import MODELS as MMDET3D_MODELS
    except ImportError:
        return
    _register(MMDET3D_MODELS, "GaussRenderLoss", GaussRenderLossMM)
    _register(MMDET3D_METRICS, "RenderedViewMetrics", RenderedViewMetricMM)


register()
