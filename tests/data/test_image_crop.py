"""The release's nuScenes network input: the stored image less its top rows (1600x900 ->
1600x896), not a resize, with K shifted exactly (its ResizeCropFlipImage with resize 1, crop
(0, 4, 1600, 900)); re-derived here in float64 from the crop box."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gaussrender import OCC3D_NUSCENES
from gaussrender.data import CAMERA_NAMES, Occ3DNuScenes, write_infos_json, write_occ3d_sample
from gaussrender.data.images import crop_origin, fit_intrinsics, load_image
from gaussrender.data.nuscenes import resolve_data_path
from tests.data.synthetic import random_labels, synthetic_scene, write_png


def test_crop_origin_is_the_release_box():
    # nuScenes: resize 1, crop_h = int(1 * 900) - 896 = 4, crop_w = 0 (dataset/nuscenes.py)
    assert crop_origin((900, 1600), (896, 1600)) == (4, 0)
    assert crop_origin((376, 1408), (376, 1408)) == (0, 0)  # KITTI-360: the stored size
    assert crop_origin((90, 170), (80, 160)) == (10, 5)  # columns centred (its eval's rule)
    with pytest.raises(ValueError, match="cannot crop 901x1600"):
        crop_origin((900, 1600), (901, 1600))


def test_load_image_crop_keeps_the_stored_pixels(tmp_path):
    stored = write_png(tmp_path / "a.png", hw=(30, 44), seed=3)
    img, scale = load_image(tmp_path / "a.png", (26, 40), fit="crop")
    assert scale == (1.0, 1.0) and img.shape == (3, 26, 40)
    want = stored[4:30, 2:42].astype(np.float32) / 255.0
    np.testing.assert_array_equal(img.permute(1, 2, 0).numpy(), want)
    with pytest.raises(ValueError, match="fit"):
        load_image(tmp_path / "a.png", (26, 40), fit="squash")


def test_cropped_intrinsics_project_to_the_same_stored_pixel():
    g = torch.Generator().manual_seed(0)
    k = torch.tensor([[1266.4, 0.0, 816.3], [0.0, 1266.4, 491.5], [0.0, 0.0, 1.0]], dtype=torch.float64)
    pts = torch.rand(50, 3, generator=g, dtype=torch.float64) * torch.tensor([20.0, 10.0, 30.0]) + torch.tensor(
        [-10.0, -5.0, 1.0]
    )
    k_crop = fit_intrinsics(k, (900, 1600), (896, 1600), "crop")
    uv = pts @ k.T
    uv = uv[:, :2] / uv[:, 2:]
    uv_crop = pts @ k_crop.T
    uv_crop = uv_crop[:, :2] / uv_crop[:, 2:]
    # pixel (r, c) of the crop is pixel (r + 4, c) of the stored image: v' = v - 4, u' = u
    torch.testing.assert_close(uv_crop, uv - torch.tensor([0.0, 4.0], dtype=torch.float64), rtol=0, atol=1e-12)
    assert float(k_crop[1, 2]) == 491.5 - 4 and torch.equal(k_crop[:, :2], k[:, :2])
    # a resize scales instead
    k_resize = fit_intrinsics(k, (900, 1600), (450, 800), "resize")
    torch.testing.assert_close(k_resize[:2], k[:2] / 2, rtol=0, atol=1e-12)


@pytest.mark.parametrize("load_images", [True, False])
def test_occ3d_reader_crops_and_shifts_k(tmp_path, load_images):
    (s,) = synthetic_scene("scene-0007", 1)
    rng = np.random.default_rng(1)
    sem = random_labels(rng, OCC3D_NUSCENES.shape, 18, 17, p_occupied=0.01)
    ones = np.ones(sem.shape, bool)
    write_occ3d_sample(tmp_path / "gt", s.scene, s.token, sem, ones, ones)
    stored = {}
    for v, name in enumerate(CAMERA_NAMES):
        stored[name] = write_png(resolve_data_path(s.cameras[name].image_path, tmp_path / "gt"), hw=(36, 64), seed=v)
    infos = write_infos_json(tmp_path / "infos.json", [s])
    kw = dict(split=None, load_images=load_images, image_size=(32, 64), with_origins=False)
    crop = Occ3DNuScenes(tmp_path / "gt", infos, image_fit="crop", **kw)[0]
    resize = Occ3DNuScenes(tmp_path / "gt", infos, **kw)[0]
    calib = torch.from_numpy(np.stack([s.cameras[n].intrinsics for n in CAMERA_NAMES])).double()
    want = calib.clone()
    want[:, 1, 2] -= 4  # 36 -> 32 rows: the top 4 go
    torch.testing.assert_close(crop["intrinsics"].double(), want, rtol=1e-7, atol=1e-4)
    assert not torch.allclose(resize["intrinsics"].double(), want)  # a resize scales rows 0 and 1
    # the render cameras are the stored images', whatever the network reads
    assert torch.equal(crop["render_intrinsics"], resize["render_intrinsics"])
    assert crop["render_image_size"].tolist() == [36, 64]
    if load_images:
        for v, name in enumerate(CAMERA_NAMES):
            np.testing.assert_array_equal(
                crop["images"][v].permute(1, 2, 0).numpy(), stored[name][4:].astype(np.float32) / 255.0
            )
    with pytest.raises(ValueError, match="image_fit"):
        Occ3DNuScenes(tmp_path / "gt", infos, image_fit="squash", **kw)


def test_paper_nuscenes_configs_crop_and_others_refuse_it():
    from pathlib import Path

    from gaussrender.train.builders import build_dataset
    from gaussrender.train.config import load_config

    configs = Path(__file__).resolve().parents[2] / "src" / "gaussrender" / "configs"
    for path in sorted(configs.glob("*.yaml")):
        cfg = load_config(str(path), [])
        nuscenes_paper = path.name.startswith(("tpvformer_", "surroundocc_occ3d", "surroundocc_surroundocc"))
        assert (cfg.data.image_fit == "crop") == nuscenes_paper, path.name
        if nuscenes_paper:
            assert tuple(cfg.data.image_size) == (896, 1600), path.name
    kitti = load_config(str(configs / "symphonies_kitti360_render.yaml"), ["data.image_fit=crop"])
    with pytest.raises(ValueError, match="data.image_fit 'crop' is for the nuScenes readers"):
        build_dataset(kitti.data, "val")
