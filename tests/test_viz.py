"""Pictures: palettes follow the benchmarks' conventions, colour maps are right at known points,
files are valid and written atomically."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

import gaussrender as gr
from gaussrender import viz


def test_palettes_follow_each_benchmark() -> None:
    occ3d = viz.palette(gr.OCC3D_NUSCENES)
    assert occ3d.shape == (18, 3) and occ3d.dtype == np.uint8
    names = gr.OCC3D_NUSCENES.class_names
    assert tuple(occ3d[names.index("car")]) == (0, 150, 245)
    assert tuple(occ3d[names.index("driveable_surface")]) == (255, 0, 255)
    assert tuple(occ3d[names.index("vegetation")]) == (0, 175, 0)
    assert tuple(occ3d[17]) == viz.EMPTY_COLOR
    # SurroundOcc: same colours, empty class first
    sur = viz.palette("surroundocc")
    assert tuple(sur[0]) == viz.EMPTY_COLOR and np.array_equal(sur[1:], occ3d[1:17])
    kitti = viz.palette("kitti360")
    knames = gr.SSCBENCH_KITTI360.class_names
    assert tuple(kitti[knames.index("car")]) == (100, 150, 245)
    assert tuple(kitti[knames.index("road")]) == (255, 0, 255)
    assert tuple(kitti[0]) == viz.EMPTY_COLOR
    # every class of every preset has its own colour
    for p in (occ3d, sur, kitti):
        assert len({tuple(c) for c in p}) == len(p)


def test_unknown_class_names_get_distinct_colours() -> None:
    grid = gr.VoxelGrid("toy", (0, 0, 0), (1, 1, 1), 0.5, (2, 2, 2), ("free", "alpha", "beta", "car"), 0)
    p = viz.palette(grid)
    assert tuple(p[3]) == (0, 150, 245)
    assert len({tuple(c) for c in p}) == 4


def test_colorize_labels_and_features() -> None:
    pal = viz.palette("occ3d")
    labels = torch.tensor([[4, 11], [17, 255]])
    img = viz.colorize_semantics(labels, pal)
    assert img.shape == (2, 2, 3) and img.dtype == np.uint8
    assert tuple(img[0, 0]) == (0, 150, 245) and tuple(img[1, 1]) == viz.IGNORE_COLOR
    # one-hot features give the label colours; a 50/50 mix gives the mean colour
    feats = torch.nn.functional.one_hot(torch.tensor([[4, 11]]), 18).float()
    assert np.array_equal(viz.colorize_semantics(feats, pal), viz.colorize_semantics(torch.tensor([[4, 11]]), pal))
    mix = torch.zeros(1, 1, 18)
    mix[0, 0, 4] = mix[0, 0, 11] = 0.5
    ref = np.rint(0.5 * pal[4].astype(float) + 0.5 * pal[11].astype(float))
    assert np.array_equal(viz.colorize_semantics(mix, "occ3d")[0, 0], ref.astype(np.uint8))


def test_colorize_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"labels must be in \[0, 18\)"):
        viz.colorize_semantics(torch.tensor([[30]]), "occ3d")
    with pytest.raises(ValueError, match="C = 18"):
        viz.colorize_semantics(torch.zeros(2, 2, 5), "occ3d")
    with pytest.raises(TypeError, match="integers"):
        viz.colorize_semantics(torch.zeros(2, 2), "occ3d")
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        viz.colorize_semantics(torch.zeros(2), "occ3d")
    with pytest.raises(TypeError, match="numpy array or torch.Tensor"):
        viz.colorize_semantics([[1]], "occ3d")


def test_depth_colormap_known_points() -> None:
    depth = np.array([[0.0, 1e-3, 25.0, 50.0, 80.0, np.nan]])
    img = viz.colorize_depth(depth, 50.0)
    assert tuple(img[0, 0]) == (0, 0, 0) and tuple(img[0, 5]) == (0, 0, 0)  # no depth
    assert tuple(img[0, 1]) == (253, 231, 37)  # nearest: viridis' yellow end
    assert tuple(img[0, 2]) == (33, 145, 140)  # half way: viridis(0.5)
    assert tuple(img[0, 3]) == tuple(img[0, 4]) == (68, 1, 84)  # far end, clipped beyond
    # monotone in lightness proxy (sum of channels) from far to near
    ramp = viz.colorize_depth(np.linspace(50, 0.01, 64)[None], 50.0)[0].astype(int).sum(1)
    assert (np.diff(ramp) >= -2).all()
    with pytest.raises(ValueError, match="max_depth"):
        viz.colorize_depth(depth, 0.0)
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        viz.colorize_depth(np.zeros(3), 1.0)


def test_tile_images_layout_and_captions() -> None:
    a = np.full((10, 20, 3), 200, np.uint8)
    b = np.full((30, 5, 3), 50, np.uint8)
    out = viz.tile_images([[a, b], [None, a]], pad=2)
    # columns as wide as their widest image (20, 20), rows as tall as their tallest (30, 10)
    assert out.shape == (2 + 30 + 2 + 10 + 2, 2 + 20 + 2 + 20 + 2, 3)
    assert tuple(out[2, 2 + 5]) == (255, 255, 255)  # above the vertically centred short image
    assert tuple(out[2 + 10, 2 + 5]) == (200, 200, 200)
    assert tuple(out[2 + 10, 2 + 20 + 2 + 9]) == (50, 50, 50)  # the horizontally centred narrow one
    assert tuple(out[2 + 10, 2 + 20 + 2 + 2]) == (255, 255, 255)
    captioned = viz.tile_images([[a]], [["hello"]], font_size=12)
    assert captioned.shape[0] > 10 + 4
    top = captioned[: captioned.shape[0] - 10 - 6]
    assert (top < 128).any()  # the caption drew dark pixels above the image
    with pytest.raises(ValueError, match="same nesting"):
        viz.tile_images([[a, a]], [["x"]])
    with pytest.raises(ValueError, match="uint8 RGB"):
        viz.tile_images([[a.astype(np.float32)]])


def test_legend_lists_classes() -> None:
    img = viz.legend("occ3d", columns=4)
    assert img.dtype == np.uint8 and img.shape[2] == 3
    assert img.shape[0] >= 5 * 10  # 17 classes in rows of 4: 5 rows
    car = np.array(viz.palette("occ3d")[4])
    assert (np.abs(img.reshape(-1, 3).astype(int) - car).sum(1) == 0).any()  # its swatch is drawn


def test_png_and_gif_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    path = viz.save_png(tmp_path / "sub" / "a.png", img)
    assert path.exists() and np.array_equal(np.asarray(Image.open(path)), img)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would create it, not 0600
    frames = [np.full((8, 10, 3), c, np.uint8) for c in (0, 80, 160, 240)]
    frames[1][:, :5] = (255, 0, 0)
    gif = viz.save_gif(tmp_path / "a.gif", frames, fps=5)
    with Image.open(gif) as im:
        assert im.n_frames == 4 and im.info["loop"] == 0 and im.info["duration"] == 200
        im.seek(1)
        assert tuple(np.asarray(im.convert("RGB"))[0, 0]) == (255, 0, 0)
    assert sorted(os.listdir(tmp_path)) == ["a.gif", "sub"]  # no temporary files left
    with pytest.raises(ValueError, match="one size"):
        viz.save_gif(tmp_path / "b.gif", [frames[0], np.zeros((3, 3, 3), np.uint8)])
    with pytest.raises(ValueError, match="at least one"):
        viz.save_gif(tmp_path / "b.gif", [])


def test_failed_write_leaves_no_file(tmp_path) -> None:
    def boom(f) -> None:
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        viz.atomic_write(tmp_path / "x.bin", boom)
    assert os.listdir(tmp_path) == []


def test_orbit_cameras_circle_the_ego_and_look_at_it() -> None:
    import math

    from gaussrender.viz import orbit_cameras

    cams = orbit_cameras(4, (30, 40), radius=20.0, altitude=5.0, fov=90.0)
    assert len(cams) == 4 and (cams.width, cams.height) == (40, 30)
    world_from_cam = torch.linalg.inv(cams.cam_from_world.double())
    for i in range(4):
        a = 2 * math.pi * i / 4 + math.pi  # frame 0 behind the ego (-x)
        centre = world_from_cam[i, :3, 3]
        assert torch.allclose(
            centre, torch.tensor([20 * math.cos(a), 20 * math.sin(a), 5.0], dtype=torch.float64), atol=1e-5
        )
        # the optical axis (camera +z) points from the centre at the origin
        axis = world_from_cam[i, :3, 2]
        assert torch.allclose(axis, -centre / centre.norm(), atol=1e-6)
    # 90 degrees across 40 pixels: focal 20 px, principal point at the image centre
    k = cams.intrinsics[0].double()
    assert torch.allclose(k, torch.tensor([[20.0, 0, 20], [0, 20.0, 15], [0, 0, 1]], dtype=torch.float64))
    with pytest.raises(ValueError, match="frames"):
        orbit_cameras(0, (30, 40))


def test_render_pictures_and_orbit_frames_sizes() -> None:
    from gaussrender import Gaussians, voxels_to_gaussians
    from gaussrender.viz import orbit_cameras, orbit_frames, palette, render_pictures

    grid = gr.get_grid("occ3d")
    labels = torch.full(grid.shape, grid.empty_index, dtype=torch.long)
    labels[100:104, 98:102, 2:6] = grid.class_names.index("car")  # a car at the ego
    g = voxels_to_gaussians(grid, labels=labels)
    assert isinstance(g, Gaussians)
    cams = orbit_cameras(2, (24, 32), radius=10.0, altitude=5.0)
    colors = palette(grid)
    sem, dep = render_pictures(g, cams, colors, (0.0, 20.0))
    assert [s.shape for s in sem] == [(24, 32, 3)] * 2 and [d.shape for d in dep] == [(24, 32, 3)] * 2
    # the car is at the image centre in its palette colour (alpha caps at 0.99 per layer, so
    # within a few units), against a black background; depth: nothing at the corner
    car = colors[grid.class_names.index("car")].astype(int)
    assert np.abs(sem[0][12, 16].astype(int) - car).max() <= 3 and tuple(sem[0][0, 0]) == (0, 0, 0)
    assert tuple(dep[0][0, 0]) == (0, 0, 0) and tuple(dep[0][12, 16]) != (0, 0, 0)
    ticks = []
    frames = orbit_frames([("a", g), ("b", g)], cams, colors, on_frame=lambda: ticks.append(1))
    assert len(frames) == 2 and len(ticks) == 2
    blank = viz.enlarge(np.zeros((24, 32, 3), np.uint8))  # small panels are enlarged: 72 x 96
    assert blank.shape == (72, 96, 3)
    assert frames[0].shape == viz.tile_images([[blank, blank]], [["a", "b"]]).shape


def test_enlarge_makes_small_panels_readable() -> None:
    tiny = np.arange(12 * 22 * 3, dtype=np.uint8).reshape(12, 22, 3)  # the 22 x 12 px panel
    big = viz.enlarge(tiny)
    assert big.shape == (72, 132, 3)  # a whole factor (6): the short side reaches 64 px
    assert np.array_equal(big[::6, ::6], tiny)  # nearest neighbour: every pixel a 6 x 6 block
    same = np.zeros((200, 300, 3), np.uint8)
    assert viz.enlarge(same) is not None and viz.enlarge(same).shape == same.shape
    assert viz.enlarge(np.zeros((1, 4000, 3), np.uint8)).shape == (1, 4000, 3)  # capped by the long side


def test_captions_never_overlap() -> None:
    a = np.zeros((12, 22, 3), np.uint8)
    out = viz.tile_images([[a, a]], [["a long caption over a tiny panel", "another"]], font_size=14)
    assert out.shape[1] > 2 * 22 + 3 * 6 + 100  # the columns widened to their captions


def test_error_panels_show_a_one_voxel_shift() -> None:
    grid = gr.VoxelGrid(
        name="toy",
        range_min=(-4.0, -4.0, -1.0),
        range_max=(4.0, 4.0, 1.0),
        voxel_size=0.5,
        shape=(16, 16, 4),
        class_names=("free", "car", "road"),
        empty_index=0,
    )
    truth = torch.zeros(grid.shape, dtype=torch.long)
    truth[6:9, 6:9, 0] = 1
    shifted = torch.roll(truth, 1, dims=0)  # one voxel further along x
    cams = gr.bev_camera(grid, 48)
    bg = torch.zeros(3)
    bg[0] = 1.0
    t = viz.render_views(gr.voxels_to_gaussians(grid, labels=truth), cams, bg)
    p = viz.render_views(gr.voxels_to_gaussians(grid, labels=shifted), cams, bg)
    rows, captions = viz.comparison_rows((t[0][0], t[1][0]), (p[0][0], p[1][0]), viz.palette(grid), (0.0, 10.0), "BEV")
    assert captions[0][:2] == ["BEV: ground truth", "prediction"] and len(rows[0]) == len(rows[1]) == 3
    red = (rows[0][2] == np.array(viz.compare.ERROR_COLOR, np.uint8)).all(-1)
    assert red.any() and red.mean() < 0.2  # the seam, not the whole picture
    same = viz.comparison_rows((t[0][0], t[1][0]), (t[0][0], t[1][0]), viz.palette(grid), (0.0, 10.0), "BEV")[0]
    assert not (same[0][2] == np.array(viz.compare.ERROR_COLOR, np.uint8)).all(-1).any()
    assert (same[1][2] == 0).all()  # no depth error: black
    assert (rows[1][2] > 0).any()  # the shift changes the depth somewhere
