"""OpenOcc v2 ``openocc_v2/<scene>/<token>/labels.npz`` files as OccNet ships and reads them."""

import numpy as np
import pytest

import gaussrender as gr
from gaussrender.data import DataFileError, OpenOccNuScenes, read_openocc_labels, write_infos_json, write_openocc_sample
from tests.data.synthetic import synthetic_scene

SHAPE = (200, 200, 16)


def test_reads_semantics_and_flow(tmp_path):
    rng = np.random.default_rng(0)
    sem = rng.integers(0, 16, SHAPE).astype(np.uint8)
    sem[rng.random(SHAPE) < 0.9] = 16  # free
    flow = rng.normal(size=(*SHAPE, 2)).astype(np.float16)
    path = tmp_path / "openocc_v2" / "scene-0003" / "tok" / "labels.npz"
    path.parent.mkdir(parents=True)
    np.savez_compressed(path, semantics=sem, flow=flow)
    out = read_openocc_labels(path)
    np.testing.assert_array_equal(out["semantics"], sem)
    np.testing.assert_array_equal(out["flow"], flow.astype(np.float32))
    assert gr.data.read_openocc_voxels(path).dtype == np.uint8

    bad = sem.copy()
    bad[1, 2, 3] = 17
    np.savez_compressed(tmp_path / "bad.npz", semantics=bad, flow=flow)
    with pytest.raises(DataFileError, match=r"bad\.npz semantics.*\[17\]"):
        read_openocc_labels(tmp_path / "bad.npz")
    np.savez_compressed(tmp_path / "nokey.npz", occupancy=sem)
    with pytest.raises(DataFileError, match=r"nokey\.npz.*'semantics'"):
        read_openocc_labels(tmp_path / "nokey.npz")


def test_dataset_finds_files_from_occ_path_or_scene(tmp_path):
    samples = synthetic_scene("scene-0007", 2)
    rng = np.random.default_rng(1)
    for s in samples:
        write_openocc_sample(tmp_path / "openocc_v2", s.scene, s.token, rng.integers(0, 17, SHAPE).astype(np.uint8))
    # OccNet's infos carry occ_path ./data/nuscenes/openocc_v2/<scene>/<token>/labels.npz and no scene name
    from dataclasses import replace

    with_path = [
        replace(s, scene=s.scene_token, occ_path=f"./data/nuscenes/openocc_v2/{s.scene}/{s.token}/labels.npz")
        for s in samples
    ]
    infos = write_infos_json(tmp_path / "infos.json", with_path)
    ds = OpenOccNuScenes(tmp_path / "openocc_v2", infos, with_origins=True)
    item = ds[1]
    assert item["labels"].shape == SHAPE and item["origins"].shape[1] == 3
    assert OpenOccNuScenes(tmp_path / "openocc_v2", samples, with_origins=False)[0]["labels"].shape == SHAPE
