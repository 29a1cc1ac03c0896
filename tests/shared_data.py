"""Where the real benchmark samples of ``shared/data`` are (see its PROVENANCE.md).

CI lays ``shared/`` beside the clone; a developer checkout may sit elsewhere, so the folder
beside the repository is tried first, then ``/work/shared``. Tests that need a file skip
with a printed reason when it is absent.
"""

from __future__ import annotations

from pathlib import Path

_CANDIDATES = (Path(__file__).resolve().parents[2] / "shared" / "data", Path("/work/shared/data"))
SHARED_DATA = next((p for p in _CANDIDATES if p.is_dir()), _CANDIDATES[0])
#: the Occ3D-nuScenes demo frame and nuScenes-mini calibration
OCC3D_DEMO = SHARED_DATA / "occ3d_nuscenes" / "occupancy_vis_demo"
