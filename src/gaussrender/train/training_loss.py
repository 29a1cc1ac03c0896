"""The training loss of a config (3D terms plus, optionally, GaussRender) and its class weights."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_write_text
from ..geometry.grid import VoxelGrid
from ..losses.class_weights import inverse_log_frequency_weights, release_class_weights
from ..losses.occupancy import Occupancy3DLoss
from .batches import _dataset_len
from .config import Config
from .distributed import DistInfo, ShardSampler, all_reduce_sum

__all__ = ["TrainingLoss", "count_classes", "class_weights_for", "dataset_identity"]


class TrainingLoss(torch.nn.Module):
    """The total training loss of a config: 3D terms plus, optionally, GaussRender.

    Args:
        cfg: the run's config (section ``loss``).
        grid: the voxel grid of the labels.
        render_generator: CPU generator for GaussRender's camera sampling (saved in
            checkpoints so that a resumed run draws the same cameras).
        class_weights: ``[C]`` cross-entropy weights used when ``loss.class_weights`` is
            not set (see :func:`class_weights_for`); with ``loss.class_weighting:
            release`` and none given, the grid's release table.

    Call ``(outputs, batch)`` with the model's outputs (``logits``, ``aux_logits``,
    ``opacity``) and the batch (``labels``, ``cam_from_grid``, and the render cameras
    ``render_intrinsics [B, Ncam, 3, 3]`` + ``render_image_size [B, 2]`` (H, W) that the
    readers give at the native image size, independent of the network input; a batch
    without them renders with the network's ``intrinsics`` at the ``images`` size).
    A learned ``opacity`` output ``[B, X, Y, Z]`` is the opacity of the predicted Gaussians.
    Returns ``(terms, extras)``: ``terms`` are the differentiable summands of the loss
    (``loss_ce``, ``loss_lovasz``, ``loss_sem_scal`` / ``loss_geo_scal`` / ``loss_frustum``
    when weighted, and with rendering ``loss_render``); ``extras`` are
    detached values for the log (the unweighted render terms ``render_cam``, ...).

    Supervision (docs/supervision.md): with ``loss.voxel_losses: false`` there are no 3D voxel
    terms (only ``loss_render``). With ``loss.targets_2d`` the batch's ``target_depth [B, Ncam,
    H, W]`` (metres, 0 = none) and ``target_semantics [B, Ncam, H, W]`` (uint8 class, 255 =
    none), images of the render cameras, go to GaussRender, which logs ``render_target_depth``
    and ``render_target_semantics``; with ``loss.render_labels: false`` GaussRender gets no
    3D labels (its cam / BEV terms are 0), so ``voxel_losses: false, render_labels: false,
    targets_2d: true`` trains from the 2D targets only.
    """

    def __init__(
        self,
        cfg: Config,
        grid: VoxelGrid,
        render_generator: torch.Generator | None = None,
        class_weights: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        weights = class_weights
        if cfg.loss.class_weights is not None:
            if len(cfg.loss.class_weights) != grid.num_classes:
                raise ValueError(
                    f"loss.class_weights has {len(cfg.loss.class_weights)} entries, the grid "
                    f"{grid.name!r} has {grid.num_classes} classes"
                )
            weights = torch.tensor(cfg.loss.class_weights, dtype=torch.float32)
        elif weights is None and cfg.loss.class_weighting == "release":
            weights = release_class_weights(grid)
        self.occupancy = Occupancy3DLoss(
            grid.num_classes,
            grid.empty_index,
            grid.ignore_index,
            ce_weight=cfg.loss.ce_weight,
            lovasz_weight=cfg.loss.lovasz_weight,
            scale_decay=cfg.loss.scale_decay,
            class_weights=weights,
            coarse_labels=cfg.loss.coarse_labels,
            sem_scal_weight=cfg.loss.sem_scal_weight,
            geo_scal_weight=cfg.loss.geo_scal_weight,
            frustum_weight=cfg.loss.frustum_weight,
            num_frustums=cfg.loss.frustum_size**2,
        )
        self.grid = grid
        self.frustum_size = cfg.loss.frustum_size
        self.render_image_size = cfg.loss.render_image_size
        self.render = None
        if cfg.loss.render:
            from ..losses.render import GaussRenderLoss

            kwargs = dict(cfg.loss.render_kwargs)
            for reserved in ("weight", "on_nan", "prefix", "seed"):
                if reserved in kwargs:
                    raise ValueError(
                        f"loss.render_kwargs.{reserved} is set by the trainer (use "
                        "loss.render_weight / loss.nonfinite); remove it"
                    )
            self.render = GaussRenderLoss(grid, weight=cfg.loss.render_weight, on_nan="raise", **kwargs)
        self.render_generator = render_generator
        self.voxel_losses = cfg.loss.voxel_losses
        self.targets_2d = cfg.loss.targets_2d
        self.render_labels = cfg.loss.render_labels

    def forward(
        self, outputs: dict[str, Any], batch: dict[str, Any]
    ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        logits = outputs["logits"].float()
        labels = batch["labels"]
        aux = [a.float() for a in (outputs.get("aux_logits") or ())]
        terms: dict[str, torch.Tensor] = {}
        if self.voxel_losses:
            frustum = self.frustum_ids(batch) if self.occupancy.frustum_weight > 0 else None
            terms.update(self.occupancy(logits, labels, aux, frustum=frustum))
        extras: dict[str, float] = {}
        if self.render is None:
            return terms, extras
        targets = self.targets_2d_of(batch) if self.targets_2d else {}
        finite = all(bool(torch.isfinite(t)) for t in terms.values()) if terms else bool(torch.isfinite(logits).all())
        if not finite:
            # the render loss refuses non-finite logits; the 3D terms (or without them, the
            # logits checked here) carry the fault
            terms["loss_render"] = logits.new_full((), float("nan"))
            return terms, extras
        opacity = outputs.get("opacity")
        intrinsics, image_size = self.render_cameras(batch)
        if "target_intrinsics" in targets:
            # the targets' own cameras (adjacent frames) share the render cameras' pixels
            targets["target_intrinsics"], _ = self.render_cameras(batch, targets["target_intrinsics"])
        try:
            out = self.render(
                logits,
                labels if self.render_labels else None,
                intrinsics=intrinsics,
                cam_from_grid=batch["cam_from_grid"].float(),
                image_size=image_size,
                opacity=None if opacity is None else opacity.float(),
                generator=self.render_generator,
                **targets,
            )
        except FloatingPointError:
            terms["loss_render"] = logits.new_full((), float("nan"))
            return terms, extras
        terms["loss_render"] = out["loss"]
        extras.update({f"render_{k}": float(v.detach()) for k, v in out.items() if k != "loss"})
        return terms, extras

    def targets_2d_of(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``target_depth`` (float32) and ``target_semantics`` (int64) ``[B, Ncam, H, W]`` of the
        batch, with ``target_intrinsics`` / ``target_cam_from_grid`` when the batch carries the
        targets' own cameras (``data.adjacent_frames``).

        Raises:
            ValueError: naming ``loss.targets_2d`` when the batch carries neither (data
                without 2D targets: set ``data.synthetic.targets_2d``).
        """
        out = {}
        if "target_depth" in batch:
            out["target_depth"] = batch["target_depth"].float()
        if "target_semantics" in batch:
            out["target_semantics"] = batch["target_semantics"].long()
        if out and "target_cam_from_grid" in batch:  # their own cameras (e.g. adjacent frames')
            out["target_intrinsics"] = batch["target_intrinsics"].float()
            out["target_cam_from_grid"] = batch["target_cam_from_grid"].float()
        if not out:
            raise ValueError(
                "loss.targets_2d is true but the batch carries no 2D targets (target_depth, "
                "target_semantics); the synthetic reader gives them with data.synthetic.targets_2d"
            )
        return out

    def frustum_ids(self, batch: dict[str, Any]) -> torch.Tensor:
        """``[B, X, Y, Z]`` local-frustum id of every voxel in the first camera, -1 for none.

        As the release (MonoScene's ``vox2pix``): the voxel's corner ``range_min + index *
        voxel_size`` (not its centre) is projected with the network's intrinsics, rounded to
        integer pixels, and tiled over the network's image (``images`` size) into
        ``loss.frustum_size`` squared tiles (:func:`gaussrender.losses.scal.frustum_ids`).
        """
        from ..losses.scal import frustum_ids

        images = batch["images"]
        if batch["intrinsics"].shape[1] < 1:
            raise ValueError("loss.frustum_weight > 0 needs a camera in the batch (intrinsics [B, Ncam >= 1, 3, 3])")
        ks = batch["intrinsics"].double()[:, 0]  # [B, 3, 3]
        cam_from_grid = batch["cam_from_grid"].double()[:, 0]  # [B, 4, 4]
        corners = self.grid.voxel_centers(dtype=torch.float64) - 0.5 * self.grid.voxel_size
        corners = corners.to(ks.device).reshape(-1, 3)  # [N, 3] grid frame, metres
        cam = corners @ cam_from_grid[:, :3, :3].transpose(1, 2) + cam_from_grid[:, None, :3, 3]  # [B, N, 3]
        z = cam[..., 2]
        xy = cam[..., :2] / torch.where(z == 0, torch.ones_like(z), z)[..., None]
        u = ks[:, None, 0, 0] * xy[..., 0] + ks[:, None, 0, 1] * xy[..., 1] + ks[:, None, 0, 2]
        v = ks[:, None, 1, 1] * xy[..., 1] + ks[:, None, 1, 2]
        pixels = torch.round(torch.stack([u, v], dim=-1))  # the release's integer pixels
        size = (int(images.shape[-2]), int(images.shape[-1]))
        ids = frustum_ids(pixels, z, size, self.frustum_size)
        return ids.reshape(ids.shape[0], *self.grid.shape).to(batch["labels"].device)

    def render_cameras(
        self, batch: dict[str, Any], intrinsics: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        """Intrinsics ``[B, Ncam, 3, 3]`` (float32) and ``(H, W)`` the sensor cameras are rendered at.

        The samples' ``render_intrinsics`` at their ``render_image_size`` (native, uncropped),
        rescaled to ``loss.render_image_size`` when that is set; without those keys, the
        network's ``intrinsics`` at the ``images`` size. ``intrinsics`` (e.g. the 2D targets'
        own cameras, in pixels of the same native size) are rescaled instead when given.

        Raises:
            ValueError: samples of one batch with different render sizes, or a malformed
                ``render_image_size``.
        """
        from ..geometry.cameras import scale_intrinsics

        if "render_intrinsics" not in batch:
            ks = batch["intrinsics"].float()
            native = (int(batch["images"].shape[-2]), int(batch["images"].shape[-1]))
        else:
            ks = batch["render_intrinsics"].float()
            sizes = torch.as_tensor(batch["render_image_size"]).reshape(-1, 2)
            if sizes.shape[0] != ks.shape[0]:
                raise ValueError(
                    f"render_image_size must be [B, 2] (H, W) with B={ks.shape[0]}, got shape {list(sizes.shape)}"
                )
            distinct = {(int(row[0]), int(row[1])) for row in sizes}  # rows of 2: reshaped above
            if len(distinct) != 1:
                raise ValueError(
                    f"the samples of a batch must share one render_image_size, got {sorted(distinct)}; "
                    "set loss.render_image_size to render them all at one size"
                )
            (native,) = distinct
        if intrinsics is not None:
            ks = intrinsics.float()
        if self.render_image_size is None or tuple(self.render_image_size) == native:
            return ks, native
        h, w = (int(s) for s in self.render_image_size)
        return scale_intrinsics(ks, w / native[1], h / native[0]).float(), (h, w)


def count_classes(dataset: torch.utils.data.Dataset, num_classes: int, info: DistInfo) -> torch.Tensor:
    """``[C]`` int64 voxel count per class over ``dataset`` (items with ``labels``), summed
    over ranks (each rank reads a non-overlapping shard)."""
    counts = torch.zeros(num_classes, dtype=torch.int64)
    for i in ShardSampler(_dataset_len(dataset, "dataset"), info.rank, info.world_size):
        labels = dataset[i]["labels"].reshape(-1).long()
        labels = labels[(labels >= 0) & (labels < num_classes)]
        counts += torch.bincount(labels, minlength=num_classes)
    if info.distributed:
        counts = all_reduce_sum(counts.to(info.device)).cpu()
    return counts


def dataset_identity(cfg: Config, grid: VoxelGrid, dataset: torch.utils.data.Dataset) -> dict[str, Any]:
    """What identifies the training data whose classes are counted: format, grid, root, the
    info file (path and SHA-256), the synthetic dataset's content hash and the samples' tokens.

    Two datasets with the same identity have the same labels, so their class counts agree;
    :func:`class_weights_for` reuses ``class_counts.json`` only for the same identity.
    """
    from .fingerprint import MANIFEST, file_digest, read_small_json

    data = cfg.data
    root = Path(data.root)
    identity: dict[str, Any] = {
        "format": data.format,
        "grid": grid.name,
        "grid_shape": [int(n) for n in grid.shape],
        "classes": list(grid.class_names),
        "root": os.path.abspath(root),
        "samples": _dataset_len(dataset, "dataset"),
    }
    infos: Path | None = None
    if data.synthetic is not None:
        if data.format != "kitti360":
            infos = root / "synthetic_infos_train.json"
        manifest = read_small_json(root / MANIFEST)
        identity["synthetic_sha256"] = manifest.get("content_sha256") if isinstance(manifest, dict) else None
    elif data.format != "kitti360" and data.train_infos:
        infos = Path(data.train_infos)
    if infos is not None:
        identity["infos"] = os.path.abspath(infos)
        identity["infos_sha256"] = file_digest(infos) if infos.is_file() else None
    names: list[str] = []
    samples = getattr(dataset, "samples", None)
    frames = getattr(dataset, "frames", None)
    if isinstance(samples, (list, tuple)) and all(hasattr(s, "token") for s in samples):
        names = [str(s.token) for s in samples]
    elif isinstance(frames, (list, tuple)):
        names = ["/".join(str(p) for p in f) if isinstance(f, (list, tuple)) else str(f) for f in frames]
    identity["tokens_sha256"] = hashlib.sha256("\n".join(names).encode("utf-8", "surrogateescape")).hexdigest()
    return identity


def class_weights_for(
    cfg: Config,
    grid: VoxelGrid,
    dataset: torch.utils.data.Dataset,
    info: DistInfo,
    cache: Path | None = None,
    identity: dict[str, Any] | None = None,
) -> torch.Tensor | None:
    """Cross-entropy class weights of ``loss.class_weighting`` (None for ``"none"`` or when
    ``loss.class_weights`` is given). ``"release"``: the grid's fixed table
    (:func:`gaussrender.losses.occupancy.release_class_weights`, docs/method.md#loss), nothing is counted.
    ``"inverse_log_frequency"``: counted from ``dataset``, cached as JSON in ``cache`` if given.
    None with ``loss.voxel_losses: false`` (no cross-entropy to weight).

    The cache is keyed by ``identity`` (default :func:`dataset_identity`): counts cached for
    another dataset, another grid, a changed info file, a cache that is not valid JSON or
    does not hold one non-negative count per class are recounted (with a warning) and the
    cache rewritten, never used.

    Raises:
        DataFileError: something other than a regular file is at ``cache`` (a directory, FIFO).
    """
    if cfg.loss.class_weights is not None or cfg.loss.class_weighting == "none" or not cfg.loss.voxel_losses:
        return None
    if cfg.loss.class_weighting == "release":
        return release_class_weights(grid)
    counts = None
    if cache is not None:
        from ..data.files import DataFileError
        from .fingerprint import read_small_json

        identity = identity if identity is not None else dataset_identity(cfg, grid, dataset)
        try:
            cached = read_small_json(cache)
        except ValueError as err:
            raise DataFileError(f"{err}; remove it (it caches the class counts)", cache) from None
        counts = _cached_counts(cached, identity, grid)
        if counts is None and cache.exists() and info.is_main:
            warnings.warn(
                f"{cache} holds class counts of another dataset (or is corrupt); counting again",
                RuntimeWarning,
                stacklevel=2,
            )
    if counts is None:
        counts = count_classes(dataset, grid.num_classes, info)
        if cache is not None and info.is_main:
            # other ranks never see a half-written file
            record = {"counts": counts.tolist(), "classes": list(grid.class_names), "identity": identity}
            atomic_write_text(cache, json.dumps(record))
    return inverse_log_frequency_weights(counts).float()


def _cached_counts(cached: Any, identity: dict[str, Any] | None, grid: VoxelGrid) -> torch.Tensor | None:
    """The counts of a ``class_counts.json`` record when it is for ``identity`` and well formed."""
    if not isinstance(cached, dict) or cached.get("identity") != identity:
        return None
    counts = cached.get("counts")
    if (
        not isinstance(counts, list)
        or len(counts) != grid.num_classes
        or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < 2**62 for c in counts)
    ):
        return None
    return torch.tensor(counts, dtype=torch.int64)
