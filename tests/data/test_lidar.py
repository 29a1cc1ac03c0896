"""nuScenes LiDAR sweeps, lidarseg labels and object boxes, read through the infos."""

import dataclasses
import json
import math

import numpy as np
import pytest

from gaussrender.data import (
    LIDARSEG_CLASSES,
    LIDARSEG_TO_OCC3D,
    OCC3D_TO_LIDARSEG,
    DataFileError,
    lidarseg_to_occ3d,
    load_infos,
    load_lidar,
    load_nuscenes_tables,
    read_lidar_points,
    read_lidarseg_labels,
    write_infos_json,
    write_lidar_points,
    write_lidarseg_labels,
)
from gaussrender.data.boxes import boxes_to_format
from gaussrender.geometry.grid import OCC3D_NUSCENES
from tests.data.synthetic import synthetic_scene, write_tables
from tests.shared_data import OCC3D_DEMO

PKL = OCC3D_DEMO / "world-nuscenes_mini_infos_val.pkl"
DETECTION_CLASSES = {
    "car",
    "truck",
    "construction_vehicle",
    "bus",
    "trailer",
    "barrier",
    "motorcycle",
    "bicycle",
    "pedestrian",
    "traffic_cone",
}
needs_real = pytest.mark.skipif(not PKL.is_file(), reason=f"real nuScenes-mini infos not found: {PKL}")

# the devkit's fine -> coarse names (nuscenes-devkit eval/lidarseg/utils.py, LidarsegClassMapper.get_fine2coarse),
# written out by name here so that the index table is checked against names, not against itself
DEVKIT_FINE_TO_COARSE = {
    "noise": "ignore",
    "human.pedestrian.adult": "pedestrian",
    "human.pedestrian.child": "pedestrian",
    "human.pedestrian.wheelchair": "ignore",
    "human.pedestrian.stroller": "ignore",
    "human.pedestrian.personal_mobility": "ignore",
    "human.pedestrian.police_officer": "pedestrian",
    "human.pedestrian.construction_worker": "pedestrian",
    "animal": "ignore",
    "vehicle.car": "car",
    "vehicle.motorcycle": "motorcycle",
    "vehicle.bicycle": "bicycle",
    "vehicle.bus.bendy": "bus",
    "vehicle.bus.rigid": "bus",
    "vehicle.truck": "truck",
    "vehicle.construction": "construction_vehicle",
    "vehicle.emergency.ambulance": "ignore",
    "vehicle.emergency.police": "ignore",
    "vehicle.trailer": "trailer",
    "movable_object.barrier": "barrier",
    "movable_object.trafficcone": "traffic_cone",
    "movable_object.pushable_pullable": "ignore",
    "movable_object.debris": "ignore",
    "static_object.bicycle_rack": "ignore",
    "flat.driveable_surface": "driveable_surface",
    "flat.sidewalk": "sidewalk",
    "flat.terrain": "terrain",
    "flat.other": "other_flat",
    "static.manmade": "manmade",
    "static.vegetation": "vegetation",
    "static.other": "ignore",
    "vehicle.ego": "ignore",
}


def test_lidarseg_table_is_the_devkit_mapping_onto_occ3d_names():
    assert len(LIDARSEG_CLASSES) == 32 and set(LIDARSEG_CLASSES) == set(DEVKIT_FINE_TO_COARSE)
    names = OCC3D_NUSCENES.class_names
    for i, fine in enumerate(LIDARSEG_CLASSES):
        coarse = DEVKIT_FINE_TO_COARSE[fine]
        want = names.index("others") if coarse == "ignore" else names.index(coarse)
        assert LIDARSEG_TO_OCC3D[i] == want, fine
    np.testing.assert_array_equal(lidarseg_to_occ3d(np.arange(32)), LIDARSEG_TO_OCC3D)
    # the writers' inverse: one fine class per Occ3D class that maps back to it
    np.testing.assert_array_equal(LIDARSEG_TO_OCC3D[OCC3D_TO_LIDARSEG], np.arange(17))
    with pytest.raises(ValueError, match=r"\[0, 32\)"):
        lidarseg_to_occ3d(np.array([32]))
    with pytest.raises(ValueError, match="integers"):
        lidarseg_to_occ3d(np.array([1.0]))


def _write_scan(path, points5):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.asarray(points5, dtype="<f4").tofile(path)


def test_read_lidar_points_roundtrip_and_hostile_files(tmp_path):
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(37, 5)).astype(np.float32)
    f = tmp_path / "a.pcd.bin"
    _write_scan(f, pts)
    out = read_lidar_points(f)
    assert out.dtype == np.float32 and out.shape == (37, 5)
    np.testing.assert_array_equal(out, pts)
    f.write_bytes(f.read_bytes()[:-3])  # truncated
    with pytest.raises(DataFileError, match=r"a\.pcd\.bin.*multiple of 20"):
        read_lidar_points(f)
    pts[3, 1] = np.nan
    _write_scan(f, pts)
    with pytest.raises(DataFileError, match=r"a\.pcd\.bin.*NaN"):
        read_lidar_points(f)
    with pytest.raises(FileNotFoundError, match="missing"):
        read_lidar_points(tmp_path / "missing.pcd.bin")
    (tmp_path / "empty.pcd.bin").write_bytes(b"")
    assert read_lidar_points(tmp_path / "empty.pcd.bin").shape == (0, 5)


def test_writers_roundtrip_through_the_readers(tmp_path):
    pts = np.array([[1.0, 2.0, 3.0], [-4.5, 0.25, 1.0]])
    write_lidar_points(tmp_path / "w.pcd.bin", pts)
    np.testing.assert_array_equal(read_lidar_points(tmp_path / "w.pcd.bin"), np.c_[pts, np.zeros((2, 2))])
    write_lidarseg_labels(tmp_path / "w.bin", np.array([0, 31]))
    np.testing.assert_array_equal(read_lidarseg_labels(tmp_path / "w.bin", 2), [0, 31])
    with pytest.raises(ValueError, match=r"\[0, 32\)"):
        write_lidarseg_labels(tmp_path / "w.bin", np.array([32]))
    with pytest.raises(ValueError, match="points must be"):
        write_lidar_points(tmp_path / "w.pcd.bin", np.zeros((2, 4)))


def test_read_lidarseg_labels_checks_count_and_classes(tmp_path):
    f = tmp_path / "x_lidarseg.bin"
    f.write_bytes(bytes([0, 17, 31, 24]))
    np.testing.assert_array_equal(read_lidarseg_labels(f, 4), [0, 17, 31, 24])
    with pytest.raises(DataFileError, match=r"x_lidarseg\.bin.*4 labels but the scan has 5"):
        read_lidarseg_labels(f, 5)
    f.write_bytes(bytes([0, 32]))
    with pytest.raises(DataFileError, match=r"x_lidarseg\.bin.*\[32\]"):
        read_lidarseg_labels(f, 2)


def _sample_with_scan(tmp_path, n=200, seed=0):
    """A sample whose LiDAR sits 1 m ahead, 1.8 m up, turned -90 degrees (nuScenes-like), and its files."""
    rng = np.random.default_rng(seed)
    sample = synthetic_scene("scene-0001", 1)[0]
    token = sample.token
    lidar_rel = f"./data/nuscenes\\samples/LIDAR_TOP/{token}.pcd.bin"  # as BEVDet infos store it
    seg_rel = f"./data/nuscenes\\lidarseg/v1.0-mini/{token}_lidarseg.bin"
    sample = dataclasses.replace(
        sample, lidar_path=lidar_rel.replace("\\", "/"), lidarseg_path=seg_rel.replace("\\", "/")
    )
    pts = np.concatenate(
        [rng.uniform(-30, 30, size=(n, 3)), rng.uniform(0, 255, (n, 1)), rng.integers(0, 32, (n, 1))], 1
    )
    fine = rng.integers(0, 32, n).astype(np.uint8)
    _write_scan(tmp_path / "samples" / "LIDAR_TOP" / f"{token}.pcd.bin", pts)
    seg = tmp_path / "lidarseg" / "v1.0-mini" / f"{token}_lidarseg.bin"
    seg.parent.mkdir(parents=True)
    seg.write_bytes(fine.tobytes())
    return sample, pts.astype(np.float32).astype(np.float64), fine


def test_load_lidar_moves_points_to_the_ego_frame_and_maps_labels(tmp_path):
    sample, pts, fine = _sample_with_scan(tmp_path)
    points, labels = load_lidar(sample, tmp_path, drop_fine=())
    # by hand: lidar2ego of the synthetic sample is a -90 degree yaw then (1.0, 0, 1.8)
    assert sample.lidar2ego.translation == (1.0, 0.0, 1.8)
    c, s = math.cos(-math.pi / 2), math.sin(-math.pi / 2)
    want = np.stack([c * pts[:, 0] - s * pts[:, 1] + 1.0, s * pts[:, 0] + c * pts[:, 1], pts[:, 2] + 1.8], 1)
    np.testing.assert_allclose(points, want, atol=1e-12)
    assert points.dtype == np.float64
    np.testing.assert_array_equal(labels, LIDARSEG_TO_OCC3D[fine])
    # lidar frame and fine labels as stored; the default drops noise and ego-vehicle returns
    raw, fine_back = load_lidar(sample, tmp_path, labels="lidarseg", frame="lidar", drop_fine=())
    np.testing.assert_array_equal(raw, pts[:, :3])
    np.testing.assert_array_equal(fine_back, fine)
    kept, kept_labels = load_lidar(sample, tmp_path)
    keep = (fine != 0) & (fine != 31)
    np.testing.assert_allclose(kept, want[keep], atol=1e-12)
    np.testing.assert_array_equal(kept_labels, LIDARSEG_TO_OCC3D[fine[keep]])
    only, none = load_lidar(sample, tmp_path, labels=None, drop_fine=())
    assert none is None and only.shape == (len(pts), 3)


def test_load_lidar_refuses_bad_paths_and_arguments(tmp_path):
    sample, _, _ = _sample_with_scan(tmp_path)
    with pytest.raises(DataFileError, match="LiDAR path"):
        load_lidar(dataclasses.replace(sample, lidar_path="../outside.pcd.bin"), tmp_path, labels=None, drop_fine=())
    with pytest.raises(DataFileError, match="lidarseg path"):
        load_lidar(dataclasses.replace(sample, lidarseg_path="/etc/passwd"), tmp_path)
    with pytest.raises(ValueError, match="no lidar_path"):
        load_lidar(dataclasses.replace(sample, lidar_path=""), tmp_path)
    with pytest.raises(ValueError, match="no lidarseg_path"):
        load_lidar(dataclasses.replace(sample, lidarseg_path=None), tmp_path)
    with pytest.raises(ValueError, match="labels must be"):
        load_lidar(sample, tmp_path, labels="semantic")
    with pytest.raises(ValueError, match="frame must be"):
        load_lidar(sample, tmp_path, frame="global")
    with pytest.raises(ValueError, match="drop_fine needs labels"):
        load_lidar(sample, tmp_path, labels=None)
    with pytest.raises(ValueError, match="needs gt_boxes"):
        load_lidar(sample, tmp_path, drop_boxes="all")
    # a label file for another scan
    (tmp_path / sample.lidarseg_path.split("nuscenes/")[1]).write_bytes(b"\x01\x02")
    with pytest.raises(DataFileError, match="2 labels but the scan has 200"):
        load_lidar(sample, tmp_path)


def test_load_lidar_drops_points_of_boxes(tmp_path):
    sample, pts, fine = _sample_with_scan(tmp_path, n=2000)
    boxes = np.array([[5.0, 5.0, 0.0, 20.0, 10.0, 30.0, 0.3], [-10.0, -10.0, 0.0, 8.0, 8.0, 30.0, -1.0]])
    still = dataclasses.replace(sample, gt_boxes=boxes, gt_velocity=np.array([[0.1, 0.0], [np.nan, 0.0]]))
    inside = []
    for b in boxes:  # float64 brute force in the LiDAR frame
        d = pts[:, :3] - b[:3]
        along = math.cos(b[6]) * d[:, 0] + math.sin(b[6]) * d[:, 1]
        across = -math.sin(b[6]) * d[:, 0] + math.cos(b[6]) * d[:, 1]
        inside.append((np.abs(along) <= b[3] / 2) & (np.abs(across) <= b[4] / 2) & (np.abs(d[:, 2]) <= b[5] / 2))
    assert inside[0].sum() > 30 and inside[1].sum() > 10
    raw, _ = load_lidar(still, tmp_path, frame="lidar", drop_fine=(), drop_boxes="all")
    np.testing.assert_array_equal(raw, pts[~(inside[0] | inside[1]), :3])
    # moving: box 0 at 0.1 m/s stays, box 1 with an unknown (NaN) velocity counts as moving
    raw, _ = load_lidar(still, tmp_path, frame="lidar", drop_fine=(), drop_boxes="moving")
    np.testing.assert_array_equal(raw, pts[~inside[1], :3])
    raw, _ = load_lidar(still, tmp_path, frame="lidar", drop_fine=(), drop_boxes="moving", min_speed=0.05)
    np.testing.assert_array_equal(raw, pts[~(inside[0] | inside[1]), :3])


def test_infos_json_roundtrip_keeps_lidarseg_boxes_and_nan_velocities(tmp_path):
    samples = synthetic_scene("scene-0002", 2)
    boxes = np.array([[1.0, 2.0, 0.5, 4.0, 2.0, 1.5, 0.25]])
    samples[0] = dataclasses.replace(
        samples[0],
        lidarseg_path="lidarseg/v1.0-mini/a_lidarseg.bin",
        gt_boxes=boxes,
        gt_names=("car",),
        gt_velocity=np.array([[np.nan, 1.0]]),
    )
    path = write_infos_json(tmp_path / "infos.json", samples)
    assert "NaN" not in path.read_text()
    back = load_infos(path)
    assert back[0].lidarseg_path == "lidarseg/v1.0-mini/a_lidarseg.bin" and back[1].lidarseg_path is None
    np.testing.assert_array_equal(back[0].gt_boxes, boxes)
    assert back[0].gt_names == ("car",) and back[1].gt_boxes is None
    np.testing.assert_array_equal(back[0].gt_velocity, [[np.nan, 1.0]])
    with pytest.raises(ValueError, match="declares its boxes 'mmdet3d-v1'"):
        load_infos(path, box_format="mmdet3d-v0")
    # a v0-layout file (w, l, h, -yaw - pi/2) reads back to the same boxes
    raw = json.loads(path.read_text())
    del raw["box_format"]
    raw["infos"][0]["gt_boxes"] = boxes_to_format(boxes, "mmdet3d-v0").tolist()
    v0 = tmp_path / "v0.json"
    v0.write_text(json.dumps(raw))
    np.testing.assert_allclose(load_infos(v0, box_format="mmdet3d-v0")[0].gt_boxes, boxes, atol=1e-12)
    assert load_infos(v0)[0].gt_boxes is None  # format unknown: boxes are not guessed
    with pytest.raises(ValueError, match="box_format must be"):
        load_infos(v0, box_format="kitti")


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("gt_boxes", [[1, 2, 3, 4, 5]], r"shape \[M, >=7\]"),
        ("gt_boxes", [[1, 2, 3, 4, 0, 6, 0]], "sizes"),
        ("gt_boxes", [[1, 2, float("inf"), 4, 5, 6, 0]], "NaN or inf"),
        ("gt_names", ["car", "bus"], "gt_names must be 1 strings"),
        ("gt_velocity", [[1.0]], "gt_velocity must be"),
        ("pts_semantic_mask_path", 3, "pts_semantic_mask_path must be a string"),
    ],
)
def test_malformed_box_fields_are_refused_naming_the_file(tmp_path, field, value, match):
    samples = synthetic_scene("scene-0003", 1)
    path = write_infos_json(tmp_path / "infos.json", samples)
    raw = json.loads(path.read_text())
    raw["infos"][0].update({"gt_boxes": [[1, 2, 3, 4, 5, 6, 0]], "gt_names": ["car"]})
    raw["infos"][0][field] = value
    path.write_text(json.dumps(raw))
    with pytest.raises(DataFileError, match=match) as err:
        load_infos(path)
    assert "infos.json" in str(err.value)


def test_tables_give_the_lidarseg_path(tmp_path):
    samples = synthetic_scene("scene-0042", 3)
    write_tables(tmp_path, samples)
    assert all(s.lidarseg_path is None for s in load_nuscenes_tables(tmp_path, "v1.0-mini"))
    rows = [
        {
            "token": f"ls-{s.token}",
            "sample_data_token": f"sd-{s.token}-LIDAR_TOP",
            "filename": f"lidarseg/v1.0-mini/{s.token}_lidarseg.bin",
        }
        for s in samples[:2]
    ]
    (tmp_path / "v1.0-mini" / "lidarseg.json").write_text(json.dumps(rows))
    back = load_nuscenes_tables(tmp_path, "v1.0-mini")
    assert [s.lidarseg_path for s in back] == [r["filename"] for r in rows] + [None]


@needs_real
def test_real_infos_boxes_agree_with_bevdet_ego_boxes():
    """The shared nuScenes-mini infos carry mmdet3d-v0 ``gt_boxes`` (LiDAR frame) and BEVDet
    ``ann_infos`` (the same boxes in the ego frame at the CAM_FRONT timestamp, l, w, h, yaw):
    read as v0 and moved LiDAR -> ego -> global -> ego(CAM_FRONT), ours must match them."""
    from gaussrender.data import safe_pickle_load

    raw = safe_pickle_load(PKL)["infos"]
    samples = load_infos(PKL, box_format="mmdet3d-v0")
    wrong = load_infos(PKL, box_format="mmdet3d-v1")
    worst_wrong = 0.0
    for s, w, r in list(zip(samples, wrong, raw))[:10]:
        assert s.lidarseg_path is not None and s.lidarseg_path.startswith("./data/nuscenes/lidarseg/")
        ann = np.array(r["ann_infos"][0], dtype=np.float64).reshape(-1, 9)
        # BEVDet's ann_infos keep, in order, the boxes of the ten detection classes that some
        # LiDAR or radar point reaches (valid_flag)
        assert s.gt_boxes is not None and s.gt_names is not None and len(s.gt_names) == len(s.gt_boxes)
        kept = np.array([n in DETECTION_CLASSES for n in s.gt_names]) & np.asarray(r["valid_flag"], dtype=bool)
        assert kept.sum() == ann.shape[0] > 0
        boxes, wrong_boxes = s.gt_boxes[kept], w.gt_boxes[kept]
        cam = s.cameras["CAM_FRONT"]
        m = np.linalg.inv(cam.ego2global.matrix()) @ s.ego2global.matrix() @ s.lidar2ego.matrix()
        centres = boxes[:, :3] @ m[:3, :3].T + m[:3, 3]
        np.testing.assert_allclose(centres, ann[:, :3], atol=1e-6)
        np.testing.assert_allclose(boxes[:, 3:6], ann[:, 3:6], atol=1e-9)
        heading = np.stack([np.cos(boxes[:, 6]), np.sin(boxes[:, 6]), np.zeros(len(ann))], 1) @ m[:3, :3].T
        diff = np.angle(np.exp(1j * (np.arctan2(heading[:, 1], heading[:, 0]) - ann[:, 6])))
        assert np.abs(diff).max() < 0.02  # the LiDAR's ~2.7 degree tilt is all that separates them
        wh = np.stack([np.cos(wrong_boxes[:, 6]), np.sin(wrong_boxes[:, 6]), np.zeros(len(ann))], 1) @ m[:3, :3].T
        worst_wrong = max(
            worst_wrong, float(np.abs(np.angle(np.exp(1j * (np.arctan2(wh[:, 1], wh[:, 0]) - ann[:, 6])))).max())
        )
    assert worst_wrong > 0.5  # read in the other layout the headings are wrong: the test can tell
