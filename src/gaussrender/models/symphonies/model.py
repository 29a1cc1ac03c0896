"""The Symphonies model (see :mod:`gaussrender.models.symphonies` for the architecture)."""

from __future__ import annotations

import torch
from torch import nn

from ..._checks import check_floating, check_shape
from .._common import check_model_inputs
from ..config import ModelConfig
from ..image_cross_attn import project_points
from ..image_encoder import ImageEncoder
from ..opacity_head import OpacityHead
from .attention import _DeformLayer
from .decoder import _ASPP, _ScenePosition, _SymphoniesLayer
from .encoder import _ImageEncoder
from .geometry import lift_depth, squeeze_points
from .sizes import SCENE_DOWNSAMPLE, SYMPHONIES_SIZES

__all__ = ["Symphonies"]


class Symphonies(nn.Module):
    """Symphonies; see :mod:`gaussrender.models.symphonies` for the architecture.

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
        self.opacity_head = OpacityHead(d, d, grid.num_classes) if cfg.learned_opacity else None

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
