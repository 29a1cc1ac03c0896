"""SemanticKITTI SSC files built the way the official tools write and read them.

The fixture is made without the code under test: raw uint16 ids with ``numpy.tofile``, masks
packed with the semantic-kitti-api's shifts (voxel 8i in bit 7 of byte i), and the expected
volume computed with the api's remap table (``evaluate_completion.py``: learning_map, then
every learning class 0 except raw 0 becomes 255, then the ``.invalid`` voxels 255).
"""

import numpy as np
import pytest

import gaussrender as gr
from gaussrender.data import (
    SEMANTICKITTI_LEARNING_MAP,
    DataFileError,
    SemanticKITTI,
    read_semantickitti_calibration,
    read_semantickitti_invalid,
    read_semantickitti_occluded,
    read_semantickitti_occupancy,
    read_semantickitti_voxels,
    write_semantickitti_sample,
)

SHAPE = (256, 256, 32)


def _api_pack(mask: np.ndarray) -> np.ndarray:
    b = mask.reshape(-1, 8).astype(np.uint8)
    return (
        b[:, 0] << 7 | b[:, 1] << 6 | b[:, 2] << 5 | b[:, 3] << 4 | b[:, 4] << 3 | b[:, 5] << 2 | b[:, 6] << 1 | b[:, 7]
    ).astype(np.uint8)


def _api_expected(raw: np.ndarray, invalid: np.ndarray | None) -> np.ndarray:
    lut = np.zeros(max(SEMANTICKITTI_LEARNING_MAP) + 100, dtype=np.int32)
    lut[list(SEMANTICKITTI_LEARNING_MAP)] = list(SEMANTICKITTI_LEARNING_MAP.values())
    lut[lut == 0] = 255
    lut[0] = 0
    out = lut[raw.reshape(-1)].astype(np.float32)
    if invalid is not None:
        out[invalid.reshape(-1) == 1] = 255
    return out.reshape(SHAPE)


@pytest.fixture()
def official(tmp_path):
    rng = np.random.default_rng(0)
    raw = np.zeros(np.prod(SHAPE), dtype=np.uint16)
    occupied = rng.random(raw.size) < 0.05
    raw[occupied] = rng.choice(np.array(sorted(SEMANTICKITTI_LEARNING_MAP)), size=int(occupied.sum()))
    invalid = (rng.random(raw.size) < 0.2).astype(np.uint8)
    voxels = tmp_path / "dataset" / "sequences" / "08" / "voxels"
    voxels.mkdir(parents=True)
    raw.tofile(voxels / "000000.label")
    _api_pack(invalid).tofile(voxels / "000000.invalid")
    _api_pack(occupied).tofile(voxels / "000000.bin")
    _api_pack(invalid ^ 1).tofile(voxels / "000000.occluded")
    return tmp_path, voxels, raw, invalid, occupied


def test_reads_official_files_as_the_api_does(official):
    _, voxels, raw, invalid, occupied = official
    labels = gr.data.read_semantickitti_voxels(voxels / "000000.label", voxels / "000000.invalid")
    assert labels.dtype == np.uint8 and labels.shape == SHAPE
    np.testing.assert_array_equal(labels, _api_expected(raw, invalid))
    without = read_semantickitti_voxels(voxels / "000000.label")
    np.testing.assert_array_equal(without, _api_expected(raw, None))
    np.testing.assert_array_equal(read_semantickitti_invalid(voxels / "000000.invalid"), invalid.reshape(SHAPE) == 1)
    np.testing.assert_array_equal(read_semantickitti_occupancy(voxels / "000000.bin"), occupied.reshape(SHAPE))
    np.testing.assert_array_equal(read_semantickitti_occluded(voxels / "000000.occluded"), invalid.reshape(SHAPE) == 0)


def test_label_map_bit_order_and_axis_order(tmp_path):
    raw = np.zeros(SHAPE, dtype=np.uint16)
    raw[0, 0, 0] = 252  # moving-car -> car (1)
    raw[0, 0, 1] = 52  # other-structure -> unlabeled -> 255
    raw[0, 0, 2] = 1  # outlier -> 255
    raw[0, 0, 3] = 99  # other-object -> 255
    raw[1, 2, 3] = 81  # traffic-sign (19): C order, x slowest, z fastest
    raw[255, 0, 31] = 60  # lane-marking -> road (9)
    raw.tofile(tmp_path / "a.label")
    packed = np.zeros(np.prod(SHAPE) // 8, dtype=np.uint8)
    packed[0] = 0b0000_0001  # the 8th voxel of the flattened volume: (0, 0, 7)
    packed[-1] = 0b1000_0000  # voxel (255, 255, 24)
    packed.tofile(tmp_path / "a.invalid")
    labels = read_semantickitti_voxels(tmp_path / "a.label", tmp_path / "a.invalid")
    assert labels[0, 0, 0] == 1 and labels[0, 0, 1] == labels[0, 0, 2] == labels[0, 0, 3] == 255
    assert labels[1, 2, 3] == 19 and labels[255, 0, 31] == 9
    assert labels[0, 0, 7] == 255 and labels[255, 255, 24] == 255 and labels[0, 0, 6] == 0
    assert int((labels == 255).sum()) == 5


def test_files_of_the_wrong_size_or_ids_are_refused_by_name(tmp_path):
    (tmp_path / "short.label").write_bytes(b"\0" * 1000)
    with pytest.raises(DataFileError, match=r"short\.label.*4194304 bytes.*has 1000"):
        read_semantickitti_voxels(tmp_path / "short.label")
    np.zeros(SHAPE, dtype=np.uint16).tofile(tmp_path / "ok.label")
    (tmp_path / "bad.invalid").write_bytes(b"\0" * 10)
    with pytest.raises(DataFileError, match=r"bad\.invalid.*262144 bytes"):
        read_semantickitti_voxels(tmp_path / "ok.label", tmp_path / "bad.invalid")
    raw = np.zeros(SHAPE, dtype=np.uint16)
    raw[3, 3, 3] = 7  # not in semantic-kitti.yaml
    raw.tofile(tmp_path / "unknown.label")
    with pytest.raises(DataFileError, match=r"unknown\.label.*\[7\]"):
        read_semantickitti_voxels(tmp_path / "unknown.label")
    with pytest.raises(FileNotFoundError, match="missing.label"):
        read_semantickitti_voxels(tmp_path / "missing.label")


def test_calibration_and_writer_round_trip(official, tmp_path):
    root, _, raw, invalid, _ = official
    p2 = np.array([[707.0912, 0.0, 601.8873, 46.88783], [0.0, 707.0912, 183.1104, 0.1178601], [0, 0, 1, 0.006203859]])
    tr = np.array(
        [
            [-0.001857739, -0.9999659, -0.008039975, -0.004784029],
            [-0.006481465, 0.008051860, -0.9999466, -0.07337429],
            [0.9999773, -0.001805528, -0.006496203, -0.3339968],
        ]
    )
    text = "P0: " + " ".join(["0"] * 12) + "\nP2: " + " ".join(map(str, p2.ravel())) + "\nTr: "
    (root / "dataset" / "sequences" / "08" / "calib.txt").write_text(text + " ".join(map(str, tr.ravel())) + "\n")
    calib = read_semantickitti_calibration(root / "dataset" / "sequences" / "08" / "calib.txt")
    tr4 = np.vstack([tr, [0, 0, 0, 1]])
    np.testing.assert_allclose(calib.intrinsics @ calib.cam_from_velo[:3], p2 @ tr4, atol=1e-9)

    ds = SemanticKITTI(root)  # root holds dataset/sequences (MonoScene's layout); split val = 08
    item = ds[0]
    assert item["token"] == "08/000000" and item["camera_names"] == ["image_2"]
    np.testing.assert_array_equal(item["labels"].numpy(), _api_expected(raw, invalid))
    assert item["render_image_size"].tolist() == [376, 1241]

    labels = _api_expected(raw, invalid).astype(np.uint8)
    write_semantickitti_sample(tmp_path / "out", 8, "000005", labels, calibration=(p2, tr))
    back = SemanticKITTI(tmp_path / "out", "val")
    assert back.frames == [("08", "000005")]
    np.testing.assert_array_equal(back[0]["labels"].numpy(), labels)
    np.testing.assert_allclose(back.calibration("08").p2, p2)


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="2 digits"):
        write_semantickitti_sample(tmp_path, "8/..", "000000", np.zeros(SHAPE, np.uint8))
    with pytest.raises(ValueError, match="labels must be in"):
        write_semantickitti_sample(tmp_path, 8, "000000", np.full(SHAPE, 20, np.uint8))
    with pytest.raises(FileNotFoundError, match="no sequences/"):
        SemanticKITTI(tmp_path)
    (tmp_path / "sequences" / "08").mkdir(parents=True)
    (tmp_path / "sequences" / "08" / "calib.txt").write_text("P2: 1 2 3\n")
    with pytest.raises(DataFileError, match="P2 must be 12 finite numbers"):
        read_semantickitti_calibration(tmp_path / "sequences" / "08" / "calib.txt")
    with pytest.raises(ValueError, match=r"split must be one of \['test', 'train', 'val'\] or a list of sequences"):
        SemanticKITTI(tmp_path, "valid")
