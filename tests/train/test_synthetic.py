"""The synthetic dataset: written through the data writers, read back by the Occ3D reader,
and its images show the labelled voxels through the written calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import gaussrender as gr
from gaussrender.geometry.transforms import matrix_to_quaternion, quaternion_to_matrix
from gaussrender.train.synthetic import SKY, make_dataset, render_views
from gaussrender.viz import palette


def _random_rotation(g: torch.Generator) -> np.ndarray:
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.numpy()


def test_matrix_to_quaternion_roundtrip():
    g = torch.Generator().manual_seed(0)
    rotations = [_random_rotation(g) for _ in range(20)]
    # the branches where w is small: half turns about each axis
    rotations += [np.diag([1.0, -1.0, -1.0]), np.diag([-1.0, 1.0, -1.0]), np.diag([-1.0, -1.0, 1.0]), np.eye(3)]
    for r in rotations:
        q = matrix_to_quaternion(r)
        assert math.isclose(float(np.linalg.norm(q)), 1.0, rel_tol=1e-12) and q[0] >= 0
        np.testing.assert_allclose(quaternion_to_matrix(q).numpy(), r, atol=1e-12)
    with pytest.raises(ValueError, match="rotation must be a"):
        matrix_to_quaternion(np.eye(4))


def test_written_dataset_reads_back_consistently(tmp_path):
    from gaussrender.data import Occ3DNuScenes

    size = (24, 40)
    ds = make_dataset(tmp_path, 1, num_val_scenes=0, seed=3, image_size=size, camera_stride=32)
    reader = Occ3DNuScenes(ds.root, ds.train_infos, load_images=True, image_size=size)
    assert len(reader) == 1
    item = reader[0]
    k, pose, names = gr.nuscenes_rig(size)
    assert item["camera_names"] == list(names)
    torch.testing.assert_close(item["intrinsics"], k)
    torch.testing.assert_close(item["cam_from_grid"], pose, atol=1e-5, rtol=0)
    assert item["labels"].shape == (200, 200, 16) and (item["labels"] != 17).sum() > 1000
    assert item["mask_camera"].any()
    # the stored images are the labels rendered through the stored calibration (PNG rounding)
    colors = torch.from_numpy(palette(gr.OCC3D_NUSCENES)).float() / 255
    again = render_views(item["labels"], colors, item["intrinsics"], item["cam_from_grid"], size)
    torch.testing.assert_close(item["images"].permute(0, 2, 3, 1), again, atol=0.6 / 255, rtol=0)
    # the scene fills part of each view; the rest is sky
    sky = torch.tensor(SKY)
    is_sky = (again - sky).abs().amax(-1) < 1e-3
    assert is_sky.any() and (~is_sky).any()


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="num_scenes must be an int >= 1"):
        make_dataset(tmp_path, 0)
    with pytest.raises(ValueError, match="image_size"):
        make_dataset(tmp_path, 1, image_size=(0, 10))
