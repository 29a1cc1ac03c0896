"""TPVFormer (Huang et al., CVPR 2023): tri-perspective view occupancy from cameras.

Three learned feature planes describe the scene: ``xy`` (top view, ``[X', Y']``), ``zx``
(side view, ``[Z', X']``) and ``yz`` (front view, ``[Y', Z']``), at the grid resolution
divided by ``tpv_scale``. Each encoder layer runs

1. cross-view hybrid attention: every plane cell reads deformable samples from all three
   planes: around itself in its own plane, and in the two other planes at anchors spread
   along the axis its plane flattens (that is where the 3D points it stands for project);
2. image cross-attention: the cell's pillar of 3D anchors (along the flattened axis) is
   projected into the cameras (:mod:`.image_cross_attn`);
3. a feed-forward block; each step followed by LayerNorm.

The aggregator upsamples the planes to the grid, sums the three features broadcast over
the voxels, ``f(x, y, z) = xy(x, y) + zx(z, x) + yz(y, z)``, and decodes class logits
with an MLP (Softplus) and a linear classifier.

Sizes (``base``) follow the GaussRender release's TPVFormer on the nuScenes grids:
ResNet-101 + FPN (4 levels, 256 channels), 256-d queries, 8 heads, TPV = grid / 2,
3 layers, pillar anchors (4, 32, 32) with (8, 64, 64) points. The hybrid attention uses
the TPVFormer paper's 16 anchors / 32 points. Differences from the releases: no
deformable convolutions in the backbone (pure PyTorch; torchvision ImageNet weights
instead of FCOS3D), anchors outside an image are masked individually, and the hybrid
attention reads all three planes (the GaussRender release only self-attends the top
plane).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..geometry.grid import VoxelGrid
from ._common import FFN, check_model_inputs, flatten_camera_features
from .config import ModelConfig
from .deform_attn import init_sampling_offsets, ms_deform_attn
from .image_cross_attn import ImageCrossAttention, project_points
from .image_encoder import ImageEncoder
from .opacity_head import OpacityHead

__all__ = ["TPVFormer", "TPVFormerSize", "TPVFORMER_SIZES"]

# Plane p flattens axis _MISSING[p]; its rows/cols are the axes _PLANE_AXES[p].
_PLANE_AXES = ((0, 1), (2, 0), (1, 2))  # xy, zx, yz
_MISSING = (2, 1, 0)


@dataclass(frozen=True)
class TPVFormerSize:
    """Hyper-parameters of one TPVFormer size (see :data:`TPVFORMER_SIZES`)."""

    backbone_depth: int
    backbone_width: int
    frozen_stages: int
    norm_eval: bool
    fpn_levels: int
    embed_dims: int
    num_heads: int
    ffn_dims: int
    tpv_scale: tuple[int, int, int]
    num_layers: int  # hybrid + image cross-attention + FFN
    num_hybrid_layers: int  # hybrid + FFN only, after the others
    pillar_anchors: tuple[int, int, int]  # 3D anchors per cell of xy, zx, yz
    pillar_points: tuple[int, int, int]  # points per head and level, per plane
    hybrid_anchors: int
    hybrid_points: int


TPVFORMER_SIZES: dict[str, TPVFormerSize] = {
    "base": TPVFormerSize(
        backbone_depth=101,
        backbone_width=64,
        frozen_stages=1,
        norm_eval=True,
        fpn_levels=4,
        embed_dims=256,
        num_heads=8,
        ffn_dims=512,
        tpv_scale=(2, 2, 2),
        num_layers=3,
        num_hybrid_layers=0,
        pillar_anchors=(4, 32, 32),
        pillar_points=(8, 64, 64),
        hybrid_anchors=16,
        hybrid_points=32,
    ),
    "tiny": TPVFormerSize(
        backbone_depth=18,
        backbone_width=16,
        frozen_stages=-1,
        norm_eval=False,
        fpn_levels=4,
        embed_dims=32,
        num_heads=4,
        ffn_dims=64,
        tpv_scale=(2, 2, 2),
        num_layers=1,
        num_hybrid_layers=1,
        pillar_anchors=(2, 4, 4),
        pillar_points=(4, 8, 8),
        hybrid_anchors=2,
        hybrid_points=4,
    ),
}


def _plane_cells(shape: tuple[int, int, int], plane: int) -> torch.Tensor:
    """Normalised 3D coordinates (in [0, 1]) of a plane's cell centres, ``[rows * cols, 3]``.

    The flattened axis is left at 0.5; callers overwrite it with anchors.
    """
    r_axis, c_axis = _PLANE_AXES[plane]
    rows = (torch.arange(shape[r_axis], dtype=torch.float64) + 0.5) / shape[r_axis]
    cols = (torch.arange(shape[c_axis], dtype=torch.float64) + 0.5) / shape[c_axis]
    rr, cc = torch.meshgrid(rows, cols, indexing="ij")
    pts = torch.full((rr.numel(), 3), 0.5, dtype=torch.float64)
    pts[:, r_axis] = rr.reshape(-1)
    pts[:, c_axis] = cc.reshape(-1)
    return pts


def _with_anchors(cells: torch.Tensor, axis: int, num: int) -> torch.Tensor:
    """``[N, 3]`` -> ``[N, num, 3]``: ``num`` evenly spaced values along ``axis``."""
    anchors = (torch.arange(num, dtype=torch.float64) + 0.5) / num
    pts = cells[:, None, :].repeat(1, num, 1)
    pts[:, :, axis] = anchors
    return pts


def _on_plane(pts: torch.Tensor, plane: int) -> torch.Tensor:
    """Normalised ``(u, v)`` = (column, row) location of 3D points on a plane."""
    r_axis, c_axis = _PLANE_AXES[plane]
    return torch.stack([pts[..., c_axis], pts[..., r_axis]], dim=-1)


class CrossViewHybridAttention(nn.Module):
    """Deformable attention of all TPV cells over the three planes (treated as 3 levels).

    Args:
        embed_dims: channels ``C``.
        num_heads: heads.
        tpv_shape: ``(X', Y', Z')`` plane resolution.
        num_anchors: anchors along the flattened axis, for the two other planes.
        num_points: points per head and plane (a multiple of ``num_anchors``).
        dropout: dropout before the residual.
    """

    reference: torch.Tensor  # buffer registered in __init__

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        tpv_shape: tuple[int, int, int],
        num_anchors: int,
        num_points: int,
        dropout: float,
    ) -> None:
        super().__init__()
        if num_points % num_anchors:
            raise ValueError(f"hybrid points ({num_points}) must be a multiple of anchors ({num_anchors})")
        self.num_heads, self.num_points = num_heads, num_points
        self.spatial_shapes = [(tpv_shape[r], tpv_shape[c]) for r, c in _PLANE_AXES]
        refs = []
        for plane in range(3):
            cells = _plane_cells(tpv_shape, plane)
            anchored = _with_anchors(cells, _MISSING[plane], num_anchors)
            anchored = anchored.repeat_interleave(num_points // num_anchors, dim=1)  # [N, P, 3]
            per_level = []
            for level in range(3):
                src = cells[:, None, :].expand(-1, num_points, -1) if level == plane else anchored
                per_level.append(_on_plane(src, level))
            refs.append(torch.stack(per_level, dim=1))  # [N, 3, P, 2]
        self.register_buffer("reference", torch.cat(refs).float(), persistent=False)
        self.sampling_offsets = nn.Linear(embed_dims, num_heads * 3 * num_points * 2)
        self.attention_weights = nn.Linear(embed_dims, num_heads * 3 * num_points)
        self.value_proj = nn.Linear(embed_dims, embed_dims)
        self.output_proj = nn.Linear(embed_dims, embed_dims)
        self.dropout = nn.Dropout(dropout)
        init_sampling_offsets(self.sampling_offsets, num_heads, 3, num_points)
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for lin in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, query: torch.Tensor) -> torch.Tensor:
        """``[B, N, C]`` (the three planes concatenated) -> ``[B, N, C]``."""
        b, n, c = query.shape
        m, p = self.num_heads, self.num_points
        value = self.value_proj(query).view(b, n, m, c // m)
        norm = torch.tensor([[w, h] for h, w in self.spatial_shapes], dtype=query.dtype, device=query.device).view(
            1, 1, 1, 3, 1, 2
        )
        off = self.sampling_offsets(query).view(b, n, m, 3, p, 2)
        loc = self.reference.to(query.dtype).view(1, n, 1, 3, p, 2) + off / norm
        weights = self.attention_weights(query).view(b, n, m, 3 * p).softmax(-1).view(b, n, m, 3, p)
        out = ms_deform_attn(value, self.spatial_shapes, loc, weights)
        return query + self.dropout(self.output_proj(out))


class _TPVLayer(nn.Module):
    def __init__(self, size: TPVFormerSize, tpv_shape: tuple[int, int, int], cross: bool, dropout: float) -> None:
        super().__init__()
        c = size.embed_dims
        self.hybrid = CrossViewHybridAttention(
            c, size.num_heads, tpv_shape, size.hybrid_anchors, size.hybrid_points, dropout
        )
        self.norm_hybrid = nn.LayerNorm(c)
        self.cross = None
        if cross:
            anchors = []
            for d, p in zip(size.pillar_anchors, size.pillar_points):
                if p % d:
                    raise ValueError(f"pillar points ({p}) must be a multiple of pillar anchors ({d})")
                anchors.append((d, p // d))
            self.cross = ImageCrossAttention(c, size.num_heads, size.fpn_levels, anchors, dropout)
            self.norm_cross = nn.LayerNorm(c)
        self.ffn = FFN(c, size.ffn_dims, dropout)
        self.norm_ffn = nn.LayerNorm(c)

    def forward(
        self,
        query: torch.Tensor,
        plane_sizes: list[int],
        features: torch.Tensor,
        shapes: list[tuple[int, int]],
        locations: list[torch.Tensor],
        visible: list[torch.Tensor],
    ) -> torch.Tensor:
        """``[B, N, C]`` planes -> ``[B, N, C]``; camera inputs as in :class:`ImageCrossAttention`."""
        query = self.norm_hybrid(self.hybrid(query))
        if self.cross is not None:
            planes = self.cross(list(query.split(plane_sizes, dim=1)), features, shapes, locations, visible)
            query = self.norm_cross(torch.cat(planes, dim=1))
        return self.norm_ffn(self.ffn(query))


class TPVFormer(nn.Module):
    """TPVFormer occupancy network; see the module docstring for the architecture.

    Args:
        cfg: a :class:`ModelConfig` with ``name="tpvformer"``.

    Call:
        ``model(images [B, V, 3, H, W] in [0, 1], intrinsics [B, V, 3, 3] pixels,
        cam_from_grid [B, V, 4, 4] metres)`` returns a dict with ``logits``
        ``[B, C, X, Y, Z]``, ``aux_logits`` ``[]`` and ``opacity`` ``[B, X, Y, Z]`` or None.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.name != "tpvformer":
            raise ValueError(f"TPVFormer needs cfg.name='tpvformer', got {cfg.name!r}")
        size = TPVFORMER_SIZES[cfg.size]
        self.cfg, self.size = cfg, size
        grid: VoxelGrid = cfg.grid
        (nx, ny, nz), (sx, sy, sz) = grid.shape, size.tpv_scale
        self.tpv_shape = (-(-nx // sx), -(-ny // sy), -(-nz // sz))
        c = size.embed_dims

        self.image_encoder = ImageEncoder(
            cfg.backbone_depth or size.backbone_depth,
            size.backbone_width,
            c,
            size.fpn_levels,
            size.frozen_stages,
            size.norm_eval,
        )
        self.cams_embeds = nn.Parameter(torch.randn(cfg.num_cameras, c))
        self.level_embeds = nn.Parameter(torch.randn(size.fpn_levels, c))
        self.plane_sizes = []
        self.plane_queries = nn.ParameterList()
        lo = torch.tensor(grid.range_min, dtype=torch.float64)
        extent = torch.tensor(grid.extent, dtype=torch.float64)
        for plane in range(3):
            r, col = _PLANE_AXES[plane]
            n = self.tpv_shape[r] * self.tpv_shape[col]
            self.plane_sizes.append(n)
            q = nn.Parameter(torch.empty(n, c))
            nn.init.xavier_uniform_(q)
            self.plane_queries.append(q)
            cells = _plane_cells(self.tpv_shape, plane)
            anchors = _with_anchors(cells, _MISSING[plane], size.pillar_anchors[plane])
            self.register_buffer(f"anchors_{plane}", (lo + anchors * extent).float(), persistent=False)

        layers = [_TPVLayer(size, self.tpv_shape, True, cfg.dropout) for _ in range(size.num_layers)]
        layers += [_TPVLayer(size, self.tpv_shape, False, cfg.dropout) for _ in range(size.num_hybrid_layers)]
        self.layers = nn.ModuleList(layers)

        self.decoder = nn.Sequential(nn.Linear(c, 2 * c), nn.Softplus(), nn.Linear(2 * c, c))
        self.classifier = nn.Linear(c, grid.num_classes)
        self.opacity_head = OpacityHead(c, c, grid.num_classes) if cfg.learned_opacity else None

    def backbone_parameters(self):
        """Parameters of the ResNet (trained with a 0.1x learning rate)."""
        return self.image_encoder.backbone.parameters()

    def _planes_to_voxels(self, query: torch.Tensor) -> torch.Tensor:
        """``[B, N, C]`` planes -> ``[B, X, Y, Z, C]`` summed voxel features."""
        b, _, c = query.shape
        X, Y, Z = self.cfg.grid.shape
        full = (X, Y, Z)
        planes = []
        for plane, q in enumerate(query.split(self.plane_sizes, dim=1)):
            r, col = _PLANE_AXES[plane]
            img = q.transpose(1, 2).reshape(b, c, self.tpv_shape[r], self.tpv_shape[col])
            if img.shape[-2:] != (full[r], full[col]):
                img = F.interpolate(img, size=(full[r], full[col]), mode="bilinear", align_corners=False)
            planes.append(img)
        xy, zx, yz = planes
        return (
            xy.permute(0, 2, 3, 1)[:, :, :, None, :]
            + zx.permute(0, 3, 2, 1)[:, :, None, :, :]
            + yz.permute(0, 2, 3, 1)[:, None, :, :, :]
        )

    def forward(self, images: torch.Tensor, intrinsics: torch.Tensor, cam_from_grid: torch.Tensor) -> dict[str, object]:
        cfg = self.cfg
        check_model_inputs(images, intrinsics, cam_from_grid, cfg.num_cameras, cfg.image_size)
        b = images.shape[0]
        feats = self.image_encoder(images)
        features, shapes = flatten_camera_features(feats, self.cams_embeds, self.level_embeds)
        padded = ImageEncoder.padded_size(cfg.image_size)
        locations, visible = [], []
        for plane in range(3):
            loc, vis = project_points(
                getattr(self, f"anchors_{plane}"), intrinsics, cam_from_grid, cfg.image_size, padded
            )
            locations.append(loc)
            visible.append(vis)

        query = torch.cat([q for q in self.plane_queries], dim=0).unsqueeze(0).expand(b, -1, -1)
        query = query.to(features.dtype)
        for layer in self.layers:
            query = layer(query, self.plane_sizes, features, shapes, locations, visible)

        voxels = self.decoder(self._planes_to_voxels(query))  # [B, X, Y, Z, C]
        logits = self.classifier(voxels).permute(0, 4, 1, 2, 3)
        opacity = self.opacity_head(voxels) if self.opacity_head is not None else None
        return {"logits": logits, "aux_logits": [], "opacity": opacity}
