"""Small synthetic nuScenes-like rigs and datasets written in the benchmarks' own layouts.

Shared by the data and eval tests. The rig is built from yaw angles so a test can predict
where a point projects without using the code under test.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from gaussrender.data import CAMERA_NAMES, CameraInfo, Pose, SampleInfo

# OpenCV camera looking along ego +x: cam x = -ego y, cam y = -ego z, cam z = ego x.
Q_FORWARD_CAMERA = (0.5, -0.5, 0.5, -0.5)
YAW_DEG = {
    "CAM_FRONT": 0.0,
    "CAM_FRONT_RIGHT": -55.0,
    "CAM_FRONT_LEFT": 55.0,
    "CAM_BACK": 180.0,
    "CAM_BACK_LEFT": 110.0,
    "CAM_BACK_RIGHT": -110.0,
}
K_SYNTH = np.array([[400.0, 0.0, 320.0], [0.0, 400.0, 180.0], [0.0, 0.0, 1.0]])  # 640 x 360 images
IMAGE_HW = (360, 640)


def quat_mul(a, b):
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return (
        w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
    )


def yaw_quat(deg: float):
    h = math.radians(deg) / 2
    return (math.cos(h), 0.0, 0.0, math.sin(h))


def synthetic_sample(
    token: str,
    scene: str,
    timestamp: int,
    ego_xy=(0.0, 0.0),
    ego_yaw_deg: float = 0.0,
    camera_height: float = 1.5,
) -> SampleInfo:
    """A sample whose six cameras sit at (0, 0, camera_height) in the ego frame, yawed per YAW_DEG."""
    ego = Pose((float(ego_xy[0]), float(ego_xy[1]), 0.0), yaw_quat(ego_yaw_deg))
    cams = {
        name: CameraInfo(
            name=name,
            image_path=f"./data/nuscenes\\samples/{name}/{token}_{name}.png",
            intrinsics=K_SYNTH.copy(),
            sensor2ego=Pose((0.0, 0.0, camera_height), quat_mul(yaw_quat(YAW_DEG[name]), Q_FORWARD_CAMERA)),
            ego2global=ego,
        )
        for name in CAMERA_NAMES
    }
    return SampleInfo(
        token=token,
        scene=scene,
        scene_token=f"tok-{scene}",
        timestamp=timestamp,
        lidar_path=f"./data/nuscenes/samples/LIDAR_TOP/{token}__LIDAR_TOP__{timestamp}.pcd.bin",
        lidar2ego=Pose((1.0, 0.0, 1.8), yaw_quat(-90.0)),
        ego2global=ego,
        cameras=cams,
    )


def synthetic_scene(scene: str, n: int, speed: float = 2.0) -> list[SampleInfo]:
    """``n`` samples driving straight along global x at ``speed`` metres per frame."""
    return [
        synthetic_sample(f"{scene}-{i:02d}", scene, 1_000_000 + 500_000 * i, ego_xy=(speed * i, 0.0)) for i in range(n)
    ]


def random_labels(rng: np.random.Generator, shape, num_classes: int, empty: int, p_occupied: float = 0.1) -> np.ndarray:
    """Mostly empty labels with random occupied voxels."""
    labels = np.full(shape, empty, dtype=np.uint8)
    occ = rng.random(shape) < p_occupied
    classes = [c for c in range(num_classes) if c != empty]
    labels[occ] = rng.choice(classes, size=int(occ.sum()))
    return labels


def write_png(path: Path, hw=IMAGE_HW, seed: int = 0) -> np.ndarray:
    from PIL import Image

    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, size=(*hw, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return array


def write_tables(root: Path, samples, version: str = "v1.0-mini", scene_name: str = "scene-0042"):
    """The same samples as official nuScenes tables (one log, lidar + six cameras)."""
    d = root / version
    d.mkdir(parents=True)
    sensors = [{"token": "sens-LIDAR_TOP", "channel": "LIDAR_TOP", "modality": "lidar"}]
    sensors += [{"token": f"sens-{n}", "channel": n, "modality": "camera"} for n in CAMERA_NAMES]
    calibs = [
        {
            "token": "cal-LIDAR_TOP",
            "sensor_token": "sens-LIDAR_TOP",
            "camera_intrinsic": [],
            "translation": list(samples[0].lidar2ego.translation),
            "rotation": list(samples[0].lidar2ego.rotation),
        }
    ]
    for n in CAMERA_NAMES:
        c = samples[0].cameras[n]
        calibs.append(
            {
                "token": f"cal-{n}",
                "sensor_token": f"sens-{n}",
                "camera_intrinsic": c.intrinsics.tolist(),
                "translation": list(c.sensor2ego.translation),
                "rotation": list(c.sensor2ego.rotation),
            }
        )
    sample_rows, sd_rows, pose_rows = [], [], []
    for i, s in enumerate(samples):
        sample_rows.append(
            {
                "token": s.token,
                "timestamp": s.timestamp,
                "scene_token": "sc",
                "prev": samples[i - 1].token if i else "",
                "next": samples[i + 1].token if i + 1 < len(samples) else "",
            }
        )
        for ch in ("LIDAR_TOP",) + CAMERA_NAMES:
            pose = s.ego2global if ch == "LIDAR_TOP" else s.cameras[ch].ego2global
            pose_rows.append(
                {
                    "token": f"pose-{s.token}-{ch}",
                    "translation": list(pose.translation),
                    "rotation": list(pose.rotation),
                    "timestamp": s.timestamp,
                }
            )
            sd_rows.append(
                {
                    "token": f"sd-{s.token}-{ch}",
                    "sample_token": s.token,
                    "is_key_frame": True,
                    "ego_pose_token": f"pose-{s.token}-{ch}",
                    "calibrated_sensor_token": f"cal-{ch}",
                    "filename": f"samples/{ch}/{s.token}.jpg",
                    "timestamp": s.timestamp,
                }
            )
        # a non-key sweep that must be ignored
        sd_rows.append(
            {
                "token": f"sweep-{s.token}",
                "sample_token": s.token,
                "is_key_frame": False,
                "ego_pose_token": f"pose-{s.token}-CAM_FRONT",
                "calibrated_sensor_token": "cal-CAM_FRONT",
                "filename": f"sweeps/CAM_FRONT/{s.token}.jpg",
                "timestamp": s.timestamp + 1,
            }
        )
    scene = [
        {
            "token": "sc",
            "name": scene_name,
            "first_sample_token": samples[0].token,
            "last_sample_token": samples[-1].token,
            "nbr_samples": len(samples),
        }
    ]
    for name, rows in [
        ("scene", scene),
        ("sample", sample_rows),
        ("sample_data", sd_rows),
        ("calibrated_sensor", calibs),
        ("ego_pose", pose_rows),
        ("sensor", sensors),
    ]:
        (d / f"{name}.json").write_text(json.dumps(rows))
