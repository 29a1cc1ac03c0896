import pytest
import torch

import gaussrender as gr

#: a 16 x 16 x 4 grid of 0.5 m voxels with three classes: renders in milliseconds
TOY = gr.VoxelGrid(
    name="integration_toy",
    range_min=(-4.0, -4.0, -1.0),
    range_max=(4.0, 4.0, 1.0),
    voxel_size=0.5,
    shape=(16, 16, 4),
    class_names=("free", "car", "road"),
    empty_index=0,
)
IMAGE_SIZE = (24, 32)


def toy_batch(batch: int = 2, seed: int = 0, dtype=torch.float32):
    """Labels (a road and a car, one ignored voxel), random logits, two cameras per sample."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.zeros(batch, *TOY.shape, dtype=torch.long)
    labels[:, :, :, 0] = 2
    labels[:, 10:13, 5:9, 0:2] = 1
    labels[0, 0, 0, 0] = 255
    logits = torch.randn(batch, 3, *TOY.shape, generator=g, dtype=dtype)
    k = torch.tensor([[20.0, 0, 16], [0, 20, 12], [0, 0, 1]], dtype=dtype).expand(batch, 2, 3, 3).contiguous()
    eye = torch.tensor([[0.0, 0, 0.5], [0.0, 0, 0.5]], dtype=dtype)
    pose = gr.look_at(eye, torch.tensor([[1.0, 0, 0.5], [-1.0, 0, 0.5]], dtype=dtype))
    return logits, labels, k, pose.expand(batch, 2, 4, 4).contiguous()


@pytest.fixture
def toy():
    return TOY
