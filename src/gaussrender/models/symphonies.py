"""Symphonies (Jiang et al., CVPR 2024): semantic scene completion from one image with instance queries.

Pipeline (``base`` follows the release's SSCBench-KITTI-360 configuration):

1. **Image encoder** (the release wraps a MaskDINO R50): ResNet-50 (stages at strides 4,
   8, 16, 32; BatchNorm frozen) and MaskDINO's pixel decoder, a 6-layer multi-scale
   deformable transformer encoder (256-d, 8 heads, 4 points, FFN 2048, post-norm, sine
   positions + level embeddings) over the strides 32, 16, 8 and an extra stride-64 level.
   The decoder reads three maps, each projected to ``embed_dims`` (1x1 conv, BatchNorm,
   ReLU, 1x1 conv): the ResNet's stride-4 map and the encoder's stride-32 and stride-16
   outputs (what the release's ``(feats[0], *multi_scale_feats[:2])`` selects, since
   MaskDINO orders its levels low resolution first).
2. **Scene queries**: a learned embedding per voxel of the scene volume (grid / 2 in x
   and y, grid / 4 in z: 128x128x8 on KITTI-360) plus a factorised learned position.
3. **Depth-based voxel proposals**: every pixel of the given depth map is lifted to the
   grid frame; the scene voxels hit by at least one pixel read the image features through
   deformable attention at the projection of their centre (3 levels, 4 points).
4. **Contextual instance queries**: ``num_queries`` learned queries, each with a learned
   image point (sigmoid, normalised image coordinates); its 3D reference is that pixel
   lifted with the depth map.
5. **Symphonies layers** (3; the last skips the query update): instance queries read the
   image (deformable attention around their point); the scene voxels inside the camera's
   view cross-attend to the instance queries (multi-head attention), then to the scene
   itself through deformable attention on the volume squeezed to 2D (z folded into
   x: a ``[X * Z, Y]`` map); the instance queries then read the squeezed scene at their
   3D reference and self-attend. After the last layer an ASPP (dilations 1, 3) refines
   the volume.
6. **Head**: a 3x3x3 transposed convolution doubling z, one doubling every axis (each
   with BatchNorm and ReLU), a 1x1x1 classifier; logits at the full grid. In training
   every layer's volume is decoded (``aux_logits``, deepest first).

Depth maps are an input: ``depth [B, 1, H_d, W_d]``, metres along the optical axis
(z-depth), any resolution (the intrinsics are rescaled to it), ``<= 0`` or non-finite
where unknown. The release uses MobileStereoNet disparities of the KITTI-360 stereo
pair, converted to depth (see :mod:`gaussrender.data.kitti360`).

Differences from the release are listed in ``docs/models.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_floating, check_shape
from ._common import check_model_inputs
from .backbone import ResNet
from .config import ModelConfig
from .deform_attn import init_sampling_offsets, ms_deform_attn
from .image_cross_attn import project_points
from .image_encoder import IMAGENET_MEAN, IMAGENET_STD, ImageEncoder
from .opacity_head import OpacityHead

__all__ = [
    "Symphonies",
    "SymphoniesSize",
    "SYMPHONIES_SIZES",
    "DeformableAttention",
    "lift_depth",
    "squeeze_volume",
    "squeeze_points",
]


@dataclass(frozen=True)
class SymphoniesSize:
    """Hyper-parameters of one Symphonies size (see :data:`SYMPHONIES_SIZES`)."""

    backbone_depth: int
    backbone_width: int
    frozen_stages: int
    norm_eval: bool
    pixel_dims: int  # MaskDINO pixel decoder width
    pixel_layers: int
    pixel_heads: int
    pixel_ffn: int
    pixel_points: int
    gn_groups: int
    embed_dims: int
    num_queries: int
    num_layers: int
    num_heads: int
    num_points: int
    aspp_dilations: tuple[int, ...]


SYMPHONIES_SIZES: dict[str, SymphoniesSize] = {
    "base": SymphoniesSize(
        backbone_depth=50,
        backbone_width=64,
        frozen_stages=-1,
        norm_eval=True,
        pixel_dims=256,
        pixel_layers=6,
        pixel_heads=8,
        pixel_ffn=2048,
        pixel_points=4,
        gn_groups=32,
        embed_dims=128,
        num_queries=100,
        num_layers=3,
        num_heads=8,
        num_points=4,
        aspp_dilations=(1, 3),
    ),
    "tiny": SymphoniesSize(
        backbone_depth=18,
        backbone_width=16,
        frozen_stages=-1,
        norm_eval=False,
        pixel_dims=32,
        pixel_layers=1,
        pixel_heads=4,
        pixel_ffn=64,
        pixel_points=2,
        gn_groups=8,
        embed_dims=16,
        num_queries=8,
        num_layers=2,
        num_heads=4,
        num_points=2,
        aspp_dilations=(1, 3),
    ),
}

#: Scene volume = grid shape divided by these factors (rounded up): the release's
#: ``project_scale=2`` and ``downsample_z=2``.
SCENE_DOWNSAMPLE = (2, 2, 4)


# ----------------------------------------------------------------------------- attention


class DeformableAttention(nn.Module):
    """Multi-scale deformable attention with its residual (mmcv's ``MultiScaleDeformableAttention``).

    ``out = identity + dropout(W_o ms_deform_attn(W_v value, ref + offsets(q), softmax(a(q))))``
    with ``q = query + query_pos`` and ``identity = query`` (before the position is added).

    Args:
        embed_dims: channels ``C``.
        num_heads: heads ``M``.
        num_levels: feature levels ``L`` of ``value``.
        num_points: points per head and level ``P``.
        dropout: on the output before the residual (mmcv's default 0.1).
    """

    def __init__(self, embed_dims: int, num_heads: int, num_levels: int, num_points: int, dropout: float = 0.1):
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f"embed_dims ({embed_dims}) must be divisible by num_heads ({num_heads})")
        self.num_heads, self.num_levels, self.num_points = num_heads, num_levels, num_points
        self.sampling_offsets = nn.Linear(embed_dims, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dims, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(embed_dims, embed_dims)
        self.output_proj = nn.Linear(embed_dims, embed_dims)
        self.dropout = nn.Dropout(dropout)
        init_sampling_offsets(self.sampling_offsets, num_heads, num_levels, num_points)
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for lin in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(
        self,
        query: torch.Tensor,
        value: torch.Tensor,
        reference: torch.Tensor,
        spatial_shapes: Sequence[tuple[int, int]],
        query_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend from ``query [B, Q, C]`` to ``value [B, S, C]`` (levels flattened row-major).

        Args:
            reference: ``[B, Q, L, 2]`` normalised ``(x, y)`` per level (pixel centres at
                ``+0.5``, the convention of :func:`ms_deform_attn`).
            spatial_shapes: ``L`` sizes ``(h, w)``.
            query_pos: ``[B, Q, C]`` or None, added to the query for offsets and weights.

        Returns:
            ``[B, Q, C]``, residual included.
        """
        b, q, c = query.shape
        m, lv, p = self.num_heads, self.num_levels, self.num_points
        x = query if query_pos is None else query + query_pos
        v = self.value_proj(value).view(b, value.shape[1], m, c // m)
        off = self.sampling_offsets(x).view(b, q, m, lv, p, 2)
        w = self.attention_weights(x).view(b, q, m, lv * p).softmax(-1).view(b, q, m, lv, p)
        norm = torch.tensor([[ww, hh] for hh, ww in spatial_shapes], dtype=off.dtype, device=off.device)
        loc = reference.to(off.dtype)[:, :, None, :, None, :] + off / norm.view(1, 1, 1, lv, 1, 2)
        out = ms_deform_attn(v, spatial_shapes, loc, w)
        return query + self.dropout(self.output_proj(out))


class _DeformLayer(nn.Module):
    """The release's ``DeformableTransformerLayer``: ``x + attn(LN(x))`` then ``x + MLP(LN(x))``.

    The attention adds its own residual to its (normalised) input, as mmcv's does, so the
    first step is ``x + LN(x) + attention``, exactly as in the release.
    """

    def __init__(self, dims: int, heads: int, levels: int, points: int, mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dims)
        self.attn = DeformableAttention(dims, heads, levels, points, dropout)
        self.ffn = None
        if mlp_ratio:
            self.norm2 = nn.LayerNorm(dims)
            self.ffn = nn.Sequential(nn.Linear(dims, dims * mlp_ratio), nn.GELU(), nn.Linear(dims * mlp_ratio, dims))

    def forward(self, query, value, reference, shapes, query_pos=None) -> torch.Tensor:
        query = query + self.attn(self.norm1(query), value, reference, shapes, query_pos)
        if self.ffn is not None:
            query = query + self.ffn(self.norm2(query))
        return query


class _AttnLayer(nn.Module):
    """The release's ``TransformerLayer``: pre-norm multi-head attention (+ GELU MLP)."""

    def __init__(self, dims: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dims)
        self.attn = nn.MultiheadAttention(dims, heads, batch_first=True)
        self.ffn = None
        if mlp_ratio:
            self.norm2 = nn.LayerNorm(dims)
            self.ffn = nn.Sequential(nn.Linear(dims, dims * mlp_ratio), nn.GELU(), nn.Linear(dims * mlp_ratio, dims))

    def forward(self, query, key=None, query_pos=None, key_pos=None) -> torch.Tensor:
        if key is None:  # self-attention: keys and values are the (un-normalised) queries
            key, key_pos = query, query_pos
        value = key
        if key_pos is not None:
            key = key + key_pos
        q = self.norm1(query)
        if query_pos is not None:
            q = q + query_pos
        query = query + self.attn(q, key, value, need_weights=False)[0]
        if self.ffn is not None:
            query = query + self.ffn(self.norm2(query))
        return query


# ----------------------------------------------------------------------------- geometry


def squeeze_volume(volume: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """Fold z into x: ``[B, C, X, Y, Z]`` -> ``([B, X*Z*Y, C], (X*Z, Y))``.

    The 2D map has rows ``x * Z + z`` and columns ``y`` (row-major flattening), so voxel
    ``(x, y, z)`` is pixel ``(row, col) = (x * Z + z, y)`` (the release's squeeze
    attention layout).
    """
    b, c, x, y, z = volume.shape
    return volume.permute(0, 2, 4, 3, 1).reshape(b, x * z * y, c), (x * z, y)


def squeeze_points(points: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Continuous voxel coordinates -> normalised ``(x, y)`` on the :func:`squeeze_volume` map.

    Args:
        points: ``[..., 3]`` voxel units (voxel ``i`` spans ``[i, i + 1)``; its centre is
            ``i + 0.5``) of a ``shape = (X, Y, Z)`` volume.

    Returns:
        ``[..., 2]``: ``(y / Y, (floor(x) * Z + z) / (X * Z))`` with ``x`` clamped to a voxel
        column and ``y``, ``z`` to the volume, so a voxel centre lands on its pixel centre.
    """
    sx, sy, sz = (int(s) for s in shape)
    ix = points[..., 0].floor().clamp(0, sx - 1)
    y = points[..., 1].clamp(0, sy)
    z = points[..., 2].clamp(0, sz)
    return torch.stack([y / sy, (ix * sz + z) / (sx * sz)], dim=-1)


def lift_depth(
    depth: torch.Tensor, intrinsics: torch.Tensor, cam_from_grid: torch.Tensor, image_size: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Back-project every pixel of a depth map into the grid frame.

    Args:
        depth: ``[B, H_d, W_d]`` z-depth, metres; ``<= 0`` or non-finite = unknown.
        intrinsics: ``[B, 3, 3]`` pixels, for ``image_size``; rescaled to ``(H_d, W_d)``.
        cam_from_grid: ``[B, 4, 4]`` grid -> OpenCV camera, metres.
        image_size: ``(H, W)`` the intrinsics refer to, pixels.

    Returns:
        ``(points [B, H_d * W_d, 3], valid [B, H_d * W_d])``: the pixel centres
        ``(u + 0.5, v + 0.5)`` at their depth, grid frame, metres (row-major pixels), and
        whether the depth was usable. Computed in float64 at least float32's range: a
        metre of error at 50 m would change the voxel.
    """
    b, hd, wd = depth.shape
    dtype = torch.promote_types(depth.dtype, torch.float64)
    scale = torch.tensor([wd / image_size[1], hd / image_size[0], 1.0], dtype=dtype, device=depth.device)
    k = scale.view(1, 3, 1) * intrinsics.to(dtype)
    v, u = torch.meshgrid(
        torch.arange(hd, dtype=dtype, device=depth.device) + 0.5,
        torch.arange(wd, dtype=dtype, device=depth.device) + 0.5,
        indexing="ij",
    )
    pix = torch.stack([u, v, torch.ones_like(u)], dim=-1).reshape(1, -1, 3)
    d = depth.to(dtype).reshape(b, -1)
    valid = torch.isfinite(d) & (d > 0)
    d = torch.where(valid, d, torch.zeros_like(d))
    rays = torch.einsum("bij,bnj->bni", torch.linalg.inv(k), pix.expand(b, -1, -1))
    cam = rays * d.unsqueeze(-1)
    grid_from_cam = torch.linalg.inv(cam_from_grid.to(dtype))
    pts = torch.einsum("bij,bnj->bni", grid_from_cam[:, :3, :3], cam) + grid_from_cam[:, None, :3, 3]
    return pts, valid


# ----------------------------------------------------------------------------- encoder


def _sine_positions(h: int, w: int, dims: int, device, dtype) -> torch.Tensor:
    """DETR's normalised sine encoding of an ``h x w`` map: ``[h*w, dims]`` (y half, then x half)."""
    half = dims // 2
    ys = torch.arange(1, h + 1, dtype=torch.float32, device=device) / (h + 1e-6) * 2 * torch.pi
    xs = torch.arange(1, w + 1, dtype=torch.float32, device=device) / (w + 1e-6) * 2 * torch.pi
    dim_t = 10000.0 ** (2 * (torch.arange(half, dtype=torch.float32, device=device) // 2) / half)

    def enc(t: torch.Tensor) -> torch.Tensor:
        e = t[:, None] / dim_t
        return torch.stack([e[:, 0::2].sin(), e[:, 1::2].cos()], dim=-1).flatten(1)

    py, px = enc(ys), enc(xs)
    pos = torch.cat([py[:, None, :].expand(h, w, half), px[None, :, :].expand(h, w, half)], dim=-1)
    return pos.reshape(h * w, dims).to(dtype)


class _PixelEncoderLayer(nn.Module):
    """Deformable DETR encoder layer (post-norm, ReLU FFN)."""

    def __init__(self, dims: int, heads: int, levels: int, points: int, ffn: int) -> None:
        super().__init__()
        self.attn = DeformableAttention(dims, heads, levels, points, dropout=0.0)
        self.norm1 = nn.LayerNorm(dims)
        self.ffn = nn.Sequential(nn.Linear(dims, ffn), nn.ReLU(inplace=True), nn.Linear(ffn, dims))
        self.norm2 = nn.LayerNorm(dims)

    def forward(self, src, pos, reference, shapes) -> torch.Tensor:
        src = self.norm1(self.attn(src, src, reference, shapes, pos))
        return self.norm2(src + self.ffn(src))


class _ImageEncoder(nn.Module):
    """ResNet + MaskDINO-style pixel decoder; returns the three maps the decoder reads.

    Output: ``[B, C, h, w]`` at strides 4 (ResNet), 32 and 16 (deformable encoder), each
    projected to ``embed_dims``.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, size: SymphoniesSize, embed_dims: int, backbone_depth: int) -> None:
        super().__init__()
        self.backbone = ResNet(
            backbone_depth,
            size.backbone_width,
            out_indices=(0, 1, 2, 3),
            frozen_stages=size.frozen_stages,
            norm_eval=size.norm_eval,
        )
        ch = self.backbone.out_channels  # strides 4, 8, 16, 32
        d, g = size.pixel_dims, size.gn_groups
        # encoder levels, low resolution first: strides 32, 16, 8, then the extra 64
        convs = [nn.Conv2d(c, d, 1) for c in (ch[3], ch[2], ch[1])] + [nn.Conv2d(ch[3], d, 3, stride=2, padding=1)]
        for conv in convs:
            nn.init.xavier_uniform_(conv.weight)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        self.input_proj = nn.ModuleList(nn.Sequential(conv, nn.GroupNorm(g, d)) for conv in convs)
        self.level_embed = nn.Parameter(torch.empty(4, d).normal_())
        self.layers = nn.ModuleList(
            _PixelEncoderLayer(d, size.pixel_heads, 4, size.pixel_points, size.pixel_ffn)
            for _ in range(size.pixel_layers)
        )
        self.out_projs = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(c, embed_dims, 1),
                nn.BatchNorm2d(embed_dims),
                nn.ReLU(inplace=True),
                nn.Conv2d(embed_dims, embed_dims, 1),
            )
            for c in (ch[0], d, d)
        )
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``[N, 3, H, W]`` in [0, 1] -> three maps ``[N, C, h, w]`` (strides 4, 32, 16 of the padded image)."""
        n, _, h, w = images.shape
        x = (images - self.mean) / self.std
        hp, wp = ImageEncoder.padded_size((h, w))
        if (hp, wp) != (h, w):
            x = F.pad(x, (0, wp - w, 0, hp - h))
        c2, c3, c4, c5 = self.backbone(x)
        srcs = [self.input_proj[0](c5), self.input_proj[1](c4), self.input_proj[2](c3), self.input_proj[3](c5)]
        shapes = [tuple(s.shape[-2:]) for s in srcs]
        flat = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], dim=1)  # [N, S, d]
        d = flat.shape[-1]
        pos = torch.cat(
            [
                _sine_positions(hh, ww, d, flat.device, flat.dtype) + self.level_embed[i].to(flat.dtype)
                for i, (hh, ww) in enumerate(shapes)
            ]
        ).expand(n, -1, -1)
        # every pixel attends around its own centre on every level (normalised coordinates
        # are shared by the levels: all cover the same padded image)
        refs = []
        for hh, ww in shapes:
            yy, xx = torch.meshgrid(
                (torch.arange(hh, device=flat.device, dtype=flat.dtype) + 0.5) / hh,
                (torch.arange(ww, device=flat.device, dtype=flat.dtype) + 0.5) / ww,
                indexing="ij",
            )
            refs.append(torch.stack([xx, yy], dim=-1).reshape(-1, 2))
        reference = torch.cat(refs)[None, :, None, :].expand(n, -1, len(shapes), -1)
        for layer in self.layers:
            flat = layer(flat, pos, reference, shapes)
        outs = flat.split([hh * ww for hh, ww in shapes], dim=1)
        maps = [o.transpose(1, 2).reshape(n, d, hh, ww) for o, (hh, ww) in zip(outs, shapes, strict=True)]
        return [proj(f) for proj, f in zip(self.out_projs, (c2, maps[0], maps[1]), strict=True)]


# ----------------------------------------------------------------------------- decoder


class _ScenePosition(nn.Module):
    """Factorised learned position of the scene voxels: ``Linear(cat(e_x, e_y, e_z))``, ``[N, C]``."""

    def __init__(self, shape: Sequence[int], dims: int) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.embeds = nn.ModuleList(nn.Embedding(n, dims // 2) for n in self.shape)
        self.proj = nn.Linear(dims // 2 * 3, dims)

    def forward(self) -> torch.Tensor:
        sx, sy, sz = self.shape
        ex, ey, ez = (e.weight for e in self.embeds if isinstance(e, nn.Embedding))
        h = ex.shape[1]
        full = torch.cat(
            [
                ex[:, None, None].expand(sx, sy, sz, h),
                ey[None, :, None].expand(sx, sy, sz, h),
                ez[None, None, :].expand(sx, sy, sz, h),
            ],
            dim=-1,
        )
        return self.proj(full.reshape(sx * sy * sz, 3 * h))


class _SymphoniesLayer(nn.Module):
    def __init__(self, dims: int, heads: int, points: int, query_update: bool, dropout: float) -> None:
        super().__init__()
        self.query_image = _DeformLayer(dims, heads, 3, points, 4, dropout)
        self.scene_query = _AttnLayer(dims, heads, 0)
        self.scene_self = _DeformLayer(dims, heads, 1, points * 2, 4, dropout)
        self.query_scene = self.query_self = None
        if query_update:
            self.query_scene = _DeformLayer(dims, heads, 1, points * 2, 0, dropout)
            self.query_self = _AttnLayer(dims, heads, 4)

    def forward(
        self,
        scene: torch.Tensor,
        queries: torch.Tensor,
        feats: torch.Tensor,
        feat_shapes: list[tuple[int, int]],
        scene_shape: tuple[int, int, int],
        scene_pos: torch.Tensor,
        fov: torch.Tensor,
        fov_ref: torch.Tensor,
        ref_2d: torch.Tensor,
        ref_3d: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``scene [B, N, C]`` (row-major voxels), ``queries [B, K, C]`` -> both updated."""
        b, n, c = scene.shape
        queries = self.query_image(queries, feats, ref_2d, feat_shapes)
        vol = scene.transpose(1, 2).reshape(b, c, *scene_shape)
        value, sq_shape = squeeze_volume(vol)
        fov_scene = scene[:, fov]
        fov_pos = scene_pos[:, fov]
        fov_scene = self.scene_query(fov_scene, queries, fov_pos)
        fov_scene = self.scene_self(fov_scene, value, fov_ref, [sq_shape], fov_pos)
        scene = scene.index_copy(1, fov, fov_scene)
        if self.query_scene is None or self.query_self is None:
            return scene, queries
        value, sq_shape = squeeze_volume(scene.transpose(1, 2).reshape(b, c, *scene_shape))
        queries = self.query_scene(queries, value, ref_3d, [sq_shape])
        queries = self.query_self(queries)
        return scene, queries


class _ASPP(nn.Module):
    """``relu(x + sum_d block_d(x))`` with two dilated 3x3x3 convolutions per dilation."""

    def __init__(self, dims: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv3d(dims, dims, 3, padding=d, dilation=d, bias=False),
                nn.BatchNorm3d(dims),
                nn.ReLU(inplace=True),
                nn.Conv3d(dims, dims, 3, padding=d, dilation=d, bias=False),
                nn.BatchNorm3d(dims),
            )
            for d in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for block in self.blocks:
            out = out + block(x)
        return F.relu(out)


class Symphonies(nn.Module):
    """Symphonies; see the module docstring for the architecture.

    Args:
        cfg: a :class:`ModelConfig` with ``name="symphonies"`` and ``num_cameras=1``.

    Call:
        ``model(images [B, 1, 3, H, W] in [0, 1], intrinsics [B, 1, 3, 3] pixels,
        cam_from_grid [B, 1, 4, 4] metres, depth=[B, 1, H_d, W_d] metres)`` returns a dict
        with ``logits`` ``[B, C, X, Y, Z]``, ``aux_logits`` (training: the earlier layers'
        logits at the full grid, deepest first; eval: empty) and ``opacity``
        ``[B, X, Y, Z]`` or None.
    """

    #: the trainer passes ``depth=batch["depth"]`` to models that set this
    needs_depth = True
    scene_centres: torch.Tensor  # [N, 1, 3] metres, grid frame (buffer)
    scene_squeezed: torch.Tensor  # [N, 2] each voxel's own pixel on the squeezed map (buffer)

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.name != "symphonies":
            raise ValueError(f"Symphonies needs cfg.name='symphonies', got {cfg.name!r}")
        if cfg.num_cameras != 1:
            raise ValueError(f"Symphonies is monocular: num_cameras must be 1, got {cfg.num_cameras}")
        size = SYMPHONIES_SIZES[cfg.size]
        self.cfg, self.size = cfg, size
        grid = cfg.grid
        d = size.embed_dims
        self.scene_shape = tuple(-(-n // f) for n, f in zip(grid.shape, SCENE_DOWNSAMPLE, strict=True))
        self.scene_voxel = tuple(grid.voxel_size * f for f in SCENE_DOWNSAMPLE)
        n_scene = self.scene_shape[0] * self.scene_shape[1] * self.scene_shape[2]

        self.image_encoder = _ImageEncoder(size, d, cfg.backbone_depth or size.backbone_depth)
        self.query_embed = nn.Embedding(size.num_queries, d)
        self.query_points = nn.Embedding(size.num_queries, 2)  # sigmoid -> normalised (u, v)
        self.scene_embed = nn.Embedding(n_scene, d)
        self.scene_pos = _ScenePosition(self.scene_shape, d)
        self.voxel_proposal = _DeformLayer(d, size.num_heads, 3, size.num_points, 4, cfg.dropout)
        self.layers = nn.ModuleList(
            _SymphoniesLayer(d, size.num_heads, size.num_points, i != size.num_layers - 1, cfg.dropout)
            for i in range(size.num_layers)
        )
        self.aspp = _ASPP(d, size.aspp_dilations)
        self.up_z = nn.Sequential(
            nn.ConvTranspose3d(d, d, 3, stride=(1, 1, 2), padding=1, output_padding=(0, 0, 1)),
            nn.BatchNorm3d(d),
            nn.ReLU(),
        )
        self.up = nn.Sequential(
            nn.ConvTranspose3d(d, d, 3, stride=2, padding=1, output_padding=1), nn.BatchNorm3d(d), nn.ReLU()
        )
        self.classifier = nn.Conv3d(d, grid.num_classes, 1)
        self.opacity_head = OpacityHead(d, d) if cfg.learned_opacity else None

        centres = [
            lo + (torch.arange(n, dtype=torch.float64) + 0.5) * s
            for lo, n, s in zip(grid.range_min, self.scene_shape, self.scene_voxel, strict=True)
        ]
        gx, gy, gz = torch.meshgrid(*centres, indexing="ij")
        self.register_buffer("scene_centres", torch.stack([gx, gy, gz], -1).reshape(-1, 1, 3), persistent=False)
        idx = [torch.arange(n, dtype=torch.float32) + 0.5 for n in self.scene_shape]
        ix, iy, iz = torch.meshgrid(*idx, indexing="ij")
        # each voxel's own pixel on the squeezed map (its centre)
        self.register_buffer(
            "scene_squeezed",
            squeeze_points(torch.stack([ix, iy, iz], -1).reshape(-1, 3), self.scene_shape),
            persistent=False,
        )

    def backbone_parameters(self):
        """Parameters of the image encoder's ResNet and pixel decoder (the release's
        ``encoder.model``, trained with a 0.1x learning rate)."""
        enc = self.image_encoder
        return [p for name, p in enc.named_parameters() if not name.startswith("out_projs.")]

    def voxel_coordinates(self, points: torch.Tensor) -> torch.Tensor:
        """Grid-frame metres ``[..., 3]`` -> continuous scene-voxel coordinates (voxel ``i`` spans ``[i, i+1)``)."""
        lo = torch.tensor(self.cfg.grid.range_min, dtype=points.dtype, device=points.device)
        size = torch.tensor(self.scene_voxel, dtype=points.dtype, device=points.device)
        return (points - lo) / size

    def proposals(self, points: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Scene voxels hit by at least one lifted pixel: bool ``[B, N]`` (row-major voxels).

        Args:
            points: ``[B, P, 3]`` grid-frame metres (:func:`lift_depth`).
            valid: ``[B, P]`` usable pixels.
        """
        sx, sy, sz = self.scene_shape
        vox = self.voxel_coordinates(points).floor()
        inside = valid & (vox >= 0).all(-1)
        inside &= (vox[..., 0] < sx) & (vox[..., 1] < sy) & (vox[..., 2] < sz)
        vox = vox.long().clamp(min=0)
        flat = (vox[..., 0] * sy + vox[..., 1]) * sz + vox[..., 2]
        flat = torch.where(inside, flat, torch.zeros_like(flat))
        # a count, not a scatter of bools: scatter_ keeps the last write, which may be a False
        counts = torch.zeros(points.shape[0], sx * sy * sz, dtype=torch.int32, device=points.device)
        counts.scatter_add_(1, flat, inside.to(torch.int32))
        return counts > 0

    def forward(
        self,
        images: torch.Tensor,
        intrinsics: torch.Tensor,
        cam_from_grid: torch.Tensor,
        depth: torch.Tensor | None = None,
    ) -> dict[str, object]:
        cfg = self.cfg
        check_model_inputs(images, intrinsics, cam_from_grid, cfg.num_cameras, cfg.image_size)
        b = images.shape[0]
        if depth is None:
            raise ValueError("Symphonies needs depth [B, 1, H_d, W_d] (metres, z-depth) for its voxel proposals")
        check_shape("depth", depth, [b, 1, "H", "W"])
        check_floating("depth", depth)
        if depth.device != images.device:
            raise ValueError(f"depth is on {depth.device} but images on {images.device}; expected one device")
        k, pose = intrinsics[:, 0], cam_from_grid[:, 0]
        h, w = cfg.image_size
        hp, wp = ImageEncoder.padded_size(cfg.image_size)

        maps = self.image_encoder(images[:, 0])
        feat_shapes = [tuple(m.shape[-2:]) for m in maps]
        feats = torch.cat([m.flatten(2).transpose(1, 2) for m in maps], dim=1)  # [B, S, C]
        dtype = feats.dtype

        # camera geometry of the scene voxels and of the depth map (no gradient: fixed geometry)
        with torch.no_grad():
            loc, vis = project_points(self.scene_centres, intrinsics, cam_from_grid, cfg.image_size, (hp, wp))
            ref_pix = loc[:, 0, :, 0]  # [B, N, 2] normalised on the padded image
            fov = vis[:, 0, :, 0].any(0).nonzero().squeeze(1)  # union over the batch
            points, valid = lift_depth(depth[:, 0], k, pose, cfg.image_size)
            proposed = self.proposals(points, valid)  # [B, N]
            hd, wd = depth.shape[-2:]

        scene_pos = self.scene_pos().to(dtype).unsqueeze(0).expand(b, -1, -1)
        scene = self.scene_embed.weight.to(dtype).unsqueeze(0).expand(b, -1, -1)
        # voxel proposals: run on the union of the batch's proposals, keep each sample's own
        any_prop = proposed.any(0).nonzero().squeeze(1)
        if any_prop.numel():
            ref = ref_pix[:, any_prop].to(dtype)[:, :, None, :].expand(-1, -1, 3, -1)
            upd = self.voxel_proposal(scene[:, any_prop], feats, ref, feat_shapes, scene_pos[:, any_prop])
            keep = proposed[:, any_prop].unsqueeze(-1)
            scene = scene.index_copy(1, any_prop, torch.where(keep, upd, scene[:, any_prop]))

        # instance queries: learned image points, 3D reference from the depth under them
        queries = self.query_embed.weight.to(dtype).unsqueeze(0).expand(b, -1, -1)
        pts = self.query_points.weight.sigmoid().to(dtype)  # [K, 2] over the real image
        ref_2d = (pts * torch.tensor([w / wp, h / hp], dtype=dtype, device=pts.device)).view(1, -1, 1, 2)
        ref_2d = ref_2d.expand(b, -1, 3, -1)
        with torch.no_grad():
            col = (pts[:, 0] * wd).long().clamp(0, wd - 1)
            row = (pts[:, 1] * hd).long().clamp(0, hd - 1)
            q3d = points[:, row * wd + col]  # [B, K, 3] metres
            ref_3d = squeeze_points(self.voxel_coordinates(q3d), self.scene_shape).to(dtype)[:, :, None, :]
        fov_ref = self.scene_squeezed[fov].to(dtype)[None, :, None, :].expand(b, -1, -1, -1)

        volumes = []
        for layer in self.layers:
            scene, queries = layer(
                scene, queries, feats, feat_shapes, self.scene_shape, scene_pos, fov, fov_ref, ref_2d, ref_3d
            )
            volumes.append(scene)
        d = scene.shape[-1]
        vols = [v.transpose(1, 2).reshape(b, d, *self.scene_shape) for v in volumes]
        vols[-1] = self.aspp(vols[-1])
        decode = vols if self.training else vols[-1:]
        logits, feat = [], None
        gx, gy, gz = cfg.grid.shape
        for v in decode:
            feat = self.up(self.up_z(v))[:, :, :gx, :gy, :gz]
            logits.append(self.classifier(feat))
        opacity = None
        if self.opacity_head is not None and feat is not None:
            opacity = self.opacity_head(feat.permute(0, 2, 3, 4, 1))
        return {"logits": logits[-1], "aux_logits": logits[-2::-1], "opacity": opacity}
