"""ResNet image backbone with torchvision-compatible parameter names.

The modules are named exactly as in torchvision's ``resnet18/34/50/101`` (``conv1``,
``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``, ...), so an ImageNet state dict
saved from torchvision loads with :func:`load_torchvision_weights` after dropping the
classifier (``fc.*``). Blocks are torchvision's "v1.5" style (stride on the 3x3
convolution). Nothing is downloaded: the user gives the path of a local file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
from torch import nn

from .._untrusted import ArchiveLimitError, zip_inflated_size

__all__ = ["ResNet", "load_torchvision_weights", "RESNET_BLOCKS"]

# Blocks per stage and block type of the standard depths.
RESNET_BLOCKS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
}


class _BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _shortcut(in_ch: int, out_ch: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))


class ResNet(nn.Module):
    """ResNet-18/34/50/101 returning the feature maps of chosen stages.

    Args:
        depth: 18, 34 (basic blocks) or 50, 101 (bottlenecks).
        base_width: channels of the stem and of the first stage's blocks (64 in the
            standard networks; smaller for CPU tests).
        out_indices: stages to return, 0-based (``(1, 2, 3)`` = strides 8, 16, 32).
        frozen_stages: freeze the stem and the first ``frozen_stages`` stages (their
            parameters get ``requires_grad=False`` and stay in eval mode); -1 freezes
            nothing. The occupancy models freeze the stem and stage 1 (``1``).
        norm_eval: keep every BatchNorm in eval mode during training and freeze its
            affine parameters, as when fine-tuning from ImageNet statistics at batch 1.

    Shapes:
        ``forward(x [N, 3, H, W]) -> list of [N, C_i, H / s_i, W / s_i]`` with
        ``s_i = 2 ** (i + 2)`` and ``C_i = base_width * 2**i * expansion``
        (:attr:`out_channels`).
    """

    def __init__(
        self,
        depth: int = 50,
        base_width: int = 64,
        out_indices: Iterable[int] = (1, 2, 3),
        frozen_stages: int = -1,
        norm_eval: bool = False,
    ) -> None:
        super().__init__()
        if depth not in RESNET_BLOCKS:
            raise ValueError(f"depth must be one of {sorted(RESNET_BLOCKS)}, got {depth!r}")
        if not isinstance(base_width, int) or base_width <= 0:
            raise ValueError(f"base_width must be a positive int, got {base_width!r}")
        self.out_indices = tuple(int(i) for i in out_indices)
        if not self.out_indices or any(i not in range(4) for i in self.out_indices):
            raise ValueError(f"out_indices must be a non-empty subset of 0..3, got {self.out_indices}")
        if not -1 <= frozen_stages <= 4:
            raise ValueError(f"frozen_stages must be in [-1, 4], got {frozen_stages}")
        self.depth = depth
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

        kind, counts = RESNET_BLOCKS[depth]
        block = _BasicBlock if kind == "basic" else _Bottleneck
        self.conv1 = nn.Conv2d(3, base_width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_ch = base_width
        channels = []
        for stage, count in enumerate(counts):
            width = base_width * 2**stage
            blocks = []
            for i in range(count):
                stride = 2 if (i == 0 and stage > 0) else 1
                blocks.append(block(in_ch, width, stride))
                in_ch = width * block.expansion
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))
            channels.append(in_ch)
        self.out_channels = [channels[i] for i in self.out_indices]

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self._freeze()

    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        mods: list[nn.Module] = [self.conv1, self.bn1]
        mods += [getattr(self, f"layer{i}") for i in range(1, self.frozen_stages + 1)]
        return mods

    def _freeze(self) -> None:
        for m in self._frozen_modules():
            for p in m.parameters():
                p.requires_grad_(False)
        if self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    for p in m.parameters():
                        p.requires_grad_(False)

    def train(self, mode: bool = True) -> ResNet:
        super().train(mode)
        if mode:
            for m in self._frozen_modules():
                m.eval()
            if self.norm_eval:
                for m in self.modules():
                    if isinstance(m, nn.BatchNorm2d):
                        m.eval()
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for stage in range(4):
            x = getattr(self, f"layer{stage + 1}")(x)
            if stage in self.out_indices:
                outs.append(x)
            if stage >= max(self.out_indices):
                break
        return outs


def load_torchvision_weights(backbone: ResNet, path: str | os.PathLike[str]) -> None:
    """Load a torchvision-format ResNet state dict from a local file into ``backbone``.

    Accepts a plain state dict or a checkpoint holding one under ``"state_dict"`` or
    ``"model"``; a ``"module."`` prefix (DataParallel) is stripped and the ImageNet
    classifier (``fc.*``) is dropped. Every other key must match exactly (name and
    shape): the check is strict so a wrong depth or width fails loudly.

    Args:
        backbone: the :class:`ResNet` to fill.
        path: a ``.pth``/``.pt`` file written by ``torch.save``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is unreadable or holds anything but tensors and plain
            containers (loaded with ``weights_only=True``: no code runs), holds no state dict,
            or keys are missing/unexpected or shapes differ (the message lists them).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"torchvision weights file not found: {os.fspath(path)!r}")
    # a zip's directory first: torch.load allocates what it declares (a zip bomb); the
    # legacy (pre-zip) format of older torchvision downloads is a plain stream, read as before
    expected = sum(t.numel() * t.element_size() for t in backbone.state_dict().values())
    limit = 2 * expected + (64 << 20)  # the backbone's weights (+ the fc head) and room to spare
    try:
        _, inflated = zip_inflated_size(path)
    except ArchiveLimitError as err:
        if "not a zip archive" not in str(err):
            raise ValueError(f"{os.fspath(path)!r}: not a loadable weights file ({err})") from None
        inflated = 0
    if inflated > limit:
        raise ValueError(
            f"{os.fspath(path)!r}: refusing a weights file whose members inflate to {inflated} bytes, more than "
            f"{limit} for this backbone"
        )
    try:
        # weights_only: a weights file from the internet must not be able to run code
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError/RuntimeError/... for bad files
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"{os.fspath(path)!r}: not a loadable weights file (only tensors and plain containers "
            f"are accepted): {type(err).__name__}: {reason}"
        ) from err
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{os.fspath(path)!r} does not hold a state dict of tensors")
    state = {}
    for key, tensor in obj.items():
        key = key[len("module.") :] if key.startswith("module.") else key
        if key.startswith("fc."):
            continue
        state[key] = tensor
    # Stages after the last returned one are still built, so their keys must be present too.
    own = backbone.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if state[k].shape != own[k].shape
    )
    if missing or unexpected or mismatched:
        raise ValueError(
            f"cannot load {os.fspath(path)!r} into ResNet-{backbone.depth}: "
            f"{len(missing)} missing key(s) {_head(missing)}, "
            f"{len(unexpected)} unexpected key(s) {_head(unexpected)}, "
            f"{len(mismatched)} shape mismatch(es) {_head(mismatched)}"
        )
    backbone.load_state_dict(state, strict=True)


def _head(items: list[str], n: int = 10) -> list[str]:
    return items[:n] + ([f"... {len(items) - n} more"] if len(items) > n else [])
