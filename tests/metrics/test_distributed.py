"""Both metrics summed across two real processes (gloo) equal one process that saw everything."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

import gaussrender as gr
from gaussrender.metrics import IoUConvention, OccupancyMetrics, RayIoU, lidar_ray_directions
from tests.two_processes import run_two

GRID = gr.VoxelGrid(
    name="toy",
    range_min=(-6.0, -6.0, -1.0),
    range_max=(6.0, 6.0, 2.0),
    voxel_size=0.5,
    shape=(24, 24, 6),
    class_names=("free", "a", "b", "c"),
    empty_index=0,
)
DIRECTIONS = lidar_ray_directions()[::13]


def _data(n: int = 4):
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(1, 4, (n, *GRID.shape), generator=gen)
    target[torch.rand(target.shape, generator=gen) > 0.1] = 0
    pred = target.clone()
    flip = torch.rand(pred.shape, generator=gen) < 0.05
    pred[flip] = torch.randint(0, 4, (int(flip.sum()),), generator=gen)
    origins = torch.rand(n, 2, 3, generator=gen) * 4 - 2
    return pred, target, origins


def _metrics():
    occ = OccupancyMetrics(GRID, convention=IoUConvention(absent="nan"))
    ray = RayIoU(GRID, directions=DIRECTIONS)
    return occ, ray


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        pred, target, origins = _data()
        occ, ray = _metrics()
        # Rank r sees samples r, r + world, ...: disjoint shards, unequal class content.
        for i in range(rank, pred.shape[0], world):
            occ.update(pred[i : i + 1], target[i : i + 1])
            ray.update(pred[i : i + 1], target[i : i + 1], origins[i : i + 1])
        torch.save({"occ": occ.compute(), "ray": ray.compute()}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available in this build")
def test_two_gloo_processes_sum_to_one(tmp_path):
    run_two(_worker, (2, str(tmp_path / "init"), str(tmp_path)))
    pred, target, origins = _data()
    occ, ray = _metrics()
    occ.update(pred, target)
    ray.update(pred, target, origins)
    expected = {"occ": occ.compute(), "ray": ray.compute()}
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        for group in ("occ", "ray"):
            assert set(got[group]) == set(expected[group])
            for key, value in expected[group].items():
                torch.testing.assert_close(got[group][key], value, equal_nan=True, msg=f"rank {rank} {group} {key}")
    # The shards differ, so a process that did not sync would disagree.
    alone, _ = _metrics()
    alone.update(pred[0::2], target[0::2])
    assert not torch.allclose(alone.compute()["per_class_iou"], expected["occ"]["per_class_iou"])
