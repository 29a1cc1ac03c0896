"""The training config's schema: one frozen dataclass per section of the YAML file, its keys,
types and defaults (the papers' recipe, docs/method.md#loss), each key commented where it is declared.
Reading, overriding and saving are in :mod:`gaussrender.train.config`; the checks beyond the
types in :mod:`gaussrender.train.config_checks`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "ModelSection",
    "AugmentConfig",
    "SyntheticConfig",
    "DataConfig",
    "LossConfig",
    "OptimConfig",
    "TrainSection",
    "Config",
]


@dataclass(frozen=True)
class ModelSection:
    name: Literal["tpvformer", "surroundocc", "symphonies"] = "tpvformer"  # architecture
    size: Literal["tiny", "base"] = "base"  # tiny: CPU-sized for tests and CI
    learned_opacity: bool = False  # predict a per-voxel opacity for GaussRender
    backbone_depth: int | None = None  # ResNet depth override (18, 34, 50, 101)
    dropout: float = 0.1  # attention / feed-forward dropout
    backbone_weights: str | None = None  # local torchvision ResNet state dict to start from
    # seed of the weight initialisation; None: derived from train.seed. Two runs that differ
    # only in train.seed but share init_seed start from the same weights
    init_seed: int | None = None


@dataclass(frozen=True)
class AugmentConfig:
    flip: bool = False  # random horizontal flip (K's u axis flipped too)
    resize_scale: tuple[float, float] = (1.0, 1.0)  # random resize factor before the crop
    brightness: float = 0.0  # jitter amplitude: factor drawn in [1 - b, 1 + b]
    contrast: float = 0.0
    saturation: float = 0.0
    # the release's mmdet3d PhotoMetricDistortionMultiViewImage per image (train/photometric.py)
    photometric: bool = False


@dataclass(frozen=True)
class SyntheticConfig:
    num_scenes: int = 4  # procedural scenes written by gaussrender.train.synthetic
    num_val_scenes: int = 1
    seed: int = 0
    image_size: tuple[int, int] = (48, 88)  # (H, W) pixels of the rendered RGB images
    lidar: bool = False  # also write a simulated LiDAR sweep per sample (.pcd.bin + lidarseg)
    with_lidar: bool = False  # items carry points [N, 3] / point_labels [N] (needs lidar)
    # items carry target_depth / target_semantics [V, H, W] at the render cameras: "camera" =
    # per-pixel ray casting into the labels (dense), "lidar" = the scan z-buffered (needs lidar)
    targets_2d: Literal["camera", "lidar"] | None = None


@dataclass(frozen=True)
class DataConfig:
    grid: str = "occ3d"  # VoxelGrid preset: occ3d, surroundocc, kitti360
    format: Literal["occ3d", "surroundocc", "kitti360"] = "occ3d"  # reader of gaussrender.data
    root: str = "data/nuscenes"  # labels root (Occ3D: holds gts/; SurroundOcc: nuscenes_occ/)
    data_root: str = ""  # nuScenes root with samples/ (images); "" = root
    train_infos: str = ""  # infos file of the training split
    val_infos: str = ""  # infos file of the validation split
    # KITTI-360: folder of depth maps <seq>/<frame>.npy for models that read depth
    # (Symphonies); "" = none (synthetic KITTI-like data: <root>/depth)
    depth_root: str = ""
    # nuScenes readers (occ3d, surroundocc): items carry target_depth / target_semantics, the
    # key-frame LiDAR scan with its nuScenes-lidarseg labels z-buffered into the render
    # cameras (files under data_root; docs/supervision.md). Synthetic data: data.synthetic.targets_2d
    lidar_targets: bool = False
    # with lidar_targets: also the LiDAR targets of these frame offsets in the scene (e.g.
    # [-1, 1]), in their own cameras; drop_moving: without points in moving objects' boxes
    adjacent_frames: tuple[int, ...] = ()
    drop_moving: bool = False
    image_size: tuple[int, int] = (896, 1600)  # (H, W) network input, pixels
    # stored image -> image_size: "resize" (K scaled), or "crop" (the release's nuScenes input:
    # the top rows and centred columns, K shifted; nuScenes readers only)
    image_fit: Literal["resize", "crop"] = "resize"
    num_cameras: int = 6  # cameras per sample
    num_workers: int = 4
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    synthetic: SyntheticConfig | None = None  # write a synthetic dataset into `root` first


@dataclass(frozen=True)
class LossConfig:
    ce_weight: float = 10.0  # class-weighted cross-entropy
    lovasz_weight: float = 1.0  # Lovasz-softmax
    sem_scal_weight: float = 0.0  # MonoScene's semantic scene-class affinity loss (0: off)
    geo_scal_weight: float = 0.0  # MonoScene's geometric (occupied/free) affinity loss (0: off)
    frustum_weight: float = 0.0  # MonoScene's frustum-proportion loss, first camera (0: off)
    frustum_size: int = 8  # the image is split into frustum_size x frustum_size local frustums
    scale_decay: float = 0.5  # weight factor per coarser auxiliary scale
    class_weights: tuple[float, ...] | None = None  # [C] explicit CE weights (wins if set)
    # else: "release" = the release's fixed table of the grid preset (docs/method.md#loss),
    # "inverse_log_frequency" = 1/log(count + 0.001) counted from the training labels, "none"
    class_weighting: Literal["none", "inverse_log_frequency", "release"] = "inverse_log_frequency"
    coarse_labels: Literal["last", "majority"] = "last"  # label rule of coarser scales (release: last)
    render: bool = False  # add the GaussRender loss
    render_weight: float = 10.0  # λ of GaussRender
    render_kwargs: dict = field(default_factory=dict)  # extra GaussRenderLoss arguments
    # (H, W) pixels the sensor cameras are rendered at; None: each sample's native image
    # size (render_image_size of the readers: nuScenes 900x1600, KITTI-360 376x1408) with
    # the uncropped K, whatever data.image_size is
    render_image_size: tuple[int, int] | None = None
    nonfinite: Literal["raise", "skip"] = "raise"  # a NaN/inf loss term: raise, or skip the step
    # what supervises the model (docs/supervision.md). voxel_losses: the 3D voxel terms above
    # (CE, Lovasz, and scal / frustum when weighted); false: none of them (e.g. 2D-only)
    voxel_losses: bool = True
    # GaussRender also compares the prediction, rendered into every render camera, with the
    # batch's 2D targets (target_depth / target_semantics of data.synthetic.targets_2d)
    targets_2d: bool = False
    # GaussRender renders the 3D labels as its target (the release's cam / BEV terms); false:
    # it gets no labels and compares with the 2D targets only
    render_labels: bool = True


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 2e-4  # AdamW
    weight_decay: float = 1e-4
    backbone_lr_mult: float = 0.1  # image backbone learning rate factor
    warmup_iters: int = 500  # linear warm-up from lr * warmup_ratio
    warmup_ratio: float = 1.0 / 3.0
    min_lr: float = 2e-7  # cosine (per iteration) floor
    # max global grad norm; None (default): no clipping, as the release's train.py (its logged
    # configs say grad_max_norm 35, but it never clips; docs/method.md#loss)
    grad_clip: float | None = None


@dataclass(frozen=True)
class TrainSection:
    epochs: int = 20
    max_steps: int | None = None  # stop early after this many optimiser steps
    batch_size: int = 1  # per process
    amp: Literal["none", "bf16", "fp16"] = "none"  # CUDA only; the render loss stays fp32
    seed: int = 0
    deterministic: bool = False  # deterministic algorithms (slower)
    log_every: int = 50  # optimiser steps between log lines
    checkpoint_every: int = 1000  # optimiser steps between checkpoints (and each epoch end)
    val_every_epochs: int = 1  # 0: no validation
    val_mask_camera: bool = True  # evaluate inside the camera-visibility mask
    val_render_scale: float = 0.0  # rendered-view metrics at this fraction of the image size (1: full); 0: off
    device: str = "auto"  # auto: cuda:<local rank> when available, else cpu


@dataclass(frozen=True)
class Config:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainSection = field(default_factory=TrainSection)
