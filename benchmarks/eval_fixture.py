"""Write a small Occ3D evaluation set to time `gaussrender eval` on real calibration.

The first N samples of scene-0103 from the nuScenes-mini infos in shared/data, each with the
real Occ3D demo labels as ground truth and the same labels shifted one voxel along x as the
prediction.

    python benchmarks/eval_fixture.py ../shared/data/occ3d_nuscenes/occupancy_vis_demo /tmp/evalbench 8
    gaussrender eval --benchmark occ3d --gt /tmp/evalbench/gt --infos /tmp/evalbench/infos.json \\
        --pred /tmp/evalbench/pred --out /tmp/evalbench/results.json
"""

import sys
from pathlib import Path

import numpy as np

import gaussrender.data as d


def main() -> None:
    demo, out, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    infos = d.load_infos(demo / "world-nuscenes_mini_infos_val.pkl")[:n]
    d.write_infos_json(out / "infos.json", infos)
    gt = d.read_occ3d_labels(demo / "3D_occupancy_data.npz")
    (out / "pred").mkdir(parents=True, exist_ok=True)
    for s in infos:
        d.write_occ3d_sample(out / "gt", s.scene, s.token, gt["semantics"], gt["mask_lidar"], gt["mask_camera"])
        np.savez_compressed(out / "pred" / f"{s.token}.npz", semantics=np.roll(gt["semantics"], 1, axis=0))


if __name__ == "__main__":
    main()
