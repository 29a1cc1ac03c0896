"""ResNet + FPN: torchvision-format weights load into our modules, and bad files fail loudly."""

from __future__ import annotations

import pytest
import torch

from gaussrender.models import FPN, ResNet, load_torchvision_weights


def torchvision_resnet_shapes(depth: int, width: int = 64) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a torchvision ``resnet{depth}`` state dict, enumerated by hand.

    Written from torchvision's layout (``conv1``/``bn1`` stem, ``layer{1-4}.{i}`` blocks
    with ``conv{1,2[,3]}``/``bn{1,2[,3]}``, ``downsample.0`` conv + ``downsample.1`` BN,
    ``fc`` classifier), independently of the module under test.
    """
    bottleneck = depth >= 50
    counts = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[depth]
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, ch: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (ch,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["conv1.weight"] = (width, 3, 7, 7)
    bn("bn1", width)
    in_ch = width
    for stage, n in enumerate(counts):
        mid = width * 2**stage
        out = mid * (4 if bottleneck else 1)
        for i in range(n):
            p = f"layer{stage + 1}.{i}"
            if bottleneck:
                shapes[f"{p}.conv1.weight"] = (mid, in_ch, 1, 1)
                shapes[f"{p}.conv2.weight"] = (mid, mid, 3, 3)
                shapes[f"{p}.conv3.weight"] = (out, mid, 1, 1)
                bn(f"{p}.bn1", mid)
                bn(f"{p}.bn2", mid)
                bn(f"{p}.bn3", out)
            else:
                shapes[f"{p}.conv1.weight"] = (mid, in_ch, 3, 3)
                shapes[f"{p}.conv2.weight"] = (mid, mid, 3, 3)
                bn(f"{p}.bn1", mid)
                bn(f"{p}.bn2", mid)
            if i == 0 and (stage > 0 or in_ch != out):
                shapes[f"{p}.downsample.0.weight"] = (out, in_ch, 1, 1)
                bn(f"{p}.downsample.1", out)
            in_ch = out
    shapes["fc.weight"] = (1000, in_ch)
    shapes["fc.bias"] = (1000,)
    return shapes


def _random_state(shapes, seed):
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, s in shapes.items():
        if k.endswith("num_batches_tracked"):
            state[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            state[k] = torch.rand(s, generator=g) + 0.5
        else:
            state[k] = torch.randn(s, generator=g)
    return state


@pytest.mark.parametrize("depth,n_keys", [(18, 122), (50, 320), (101, None)])
def test_parameter_names_are_torchvision_names(depth, n_keys):
    expected = torchvision_resnet_shapes(depth)
    if n_keys is not None:
        assert len(expected) == n_keys  # torchvision's state-dict sizes (with fc and BN counters)
    model = ResNet(depth)
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert own == {k: s for k, s in expected.items() if not k.startswith("fc.")}


def test_round_trip_from_a_torchvision_file(tmp_path):
    # Width 16 keeps the file small; the names are those of the width-64 test above.
    state = _random_state(torchvision_resnet_shapes(18, width=16), seed=0)
    path = tmp_path / "resnet18.pth"
    torch.save({"module." + k: v for k, v in state.items()}, path)  # DataParallel-style names
    model = ResNet(18, base_width=16)
    load_torchvision_weights(model, path)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, state[k], msg=k)


def test_wrong_file_contents_are_listed(tmp_path):
    state = _random_state(torchvision_resnet_shapes(18, width=16), seed=1)
    state.pop("layer1.0.conv1.weight")
    state["layer9.extra"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    model = ResNet(18, base_width=16)
    with pytest.raises(
        ValueError, match=r"1 missing key\(s\) \['layer1.0.conv1.weight'\].*1 unexpected key\(s\) \['layer9.extra'\]"
    ):
        load_torchvision_weights(model, path)
    # A file of another width is refused with the shapes named, not half-loaded.
    torch.save(_random_state(torchvision_resnet_shapes(18, width=8), seed=2), path)
    with pytest.raises(ValueError, match=r"shape mismatch.*conv1.weight: file \(8, 3, 7, 7\) vs model \(16, 3, 7, 7\)"):
        load_torchvision_weights(model, path)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_torchvision_weights(model, tmp_path / "nope.pth")


def test_frozen_stem_and_norm_eval():
    model = ResNet(18, base_width=8, frozen_stages=1, norm_eval=True).train()
    assert not model.conv1.weight.requires_grad and not model.layer1[0].conv1.weight.requires_grad
    assert model.layer2[0].conv1.weight.requires_grad
    assert not model.layer3[0].bn1.weight.requires_grad
    assert all(not m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_feature_strides_and_fpn_levels():
    model = ResNet(18, base_width=8, out_indices=(1, 2, 3))
    feats = model(torch.randn(2, 3, 64, 96))
    assert [tuple(f.shape) for f in feats] == [(2, 16, 8, 12), (2, 32, 4, 6), (2, 64, 2, 3)]
    fpn = FPN(model.out_channels, 12, num_outs=4)
    outs = fpn(feats)
    assert [tuple(o.shape) for o in outs] == [(2, 12, 8, 12), (2, 12, 4, 6), (2, 12, 2, 3), (2, 12, 1, 2)]
    with pytest.raises(ValueError, match="depth"):
        ResNet(42)
