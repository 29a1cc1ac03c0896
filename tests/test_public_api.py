"""The public surface: names users rely on, docstring examples that run, and a light import."""

import doctest
import importlib
import importlib.util
import pkgutil
import subprocess
import sys

import pytest

import gaussrender as gr

EXPECTED = {
    "VoxelGrid",
    "OCC3D_NUSCENES",
    "SURROUNDOCC_NUSCENES",
    "SSCBENCH_KITTI360",
    "OCC3D_WAYMO",
    "OPENOCC_NUSCENES",
    "NUSCENES_OCCUPANCY",
    "SEMANTICKITTI",
    "PRESETS",
    "get_grid",
    "Cameras",
    "look_at",
    "render",
    "RenderResult",
    "available_backends",
    "set_checks",
    "Gaussians",
    "voxels_to_gaussians",
    "project_points",
    "voxels_from_points",
    "points_in_boxes",
    "adjacent_cam_from_grid",
    "GaussRenderLoss",
    "gauss_render_loss",
    "RenderLossOptions",
    "bev_camera",
    "nuscenes_rig",
    "apply_strategy",
    "NUSCENES_CAMERA_WEIGHTS",
    "camera_strategies",
    "geometry",
    "make_scene",
    "degrade",
    "OccupancyMetrics",
    "RayIoU",
    "metrics",
    "data",
    "models",
    "losses",
    "losses3d",
    "losses_scal",
    "viz",
    "__version__",
}


def test_public_names_are_stable():
    assert set(gr.__all__) == EXPECTED
    for name in gr.__all__:
        assert getattr(gr, name) is not None


def _modules():
    skip = {"gaussrender.render._triton", "gaussrender.render._triton_kernels", "gaussrender.__main__"}
    # an integration imports its framework (an optional extra): checked when it is installed
    for framework in ("mmengine", "lightning"):
        if importlib.util.find_spec(framework) is None:
            skip.add(f"gaussrender.integrations.{framework}")
    for info in pkgutil.walk_packages(gr.__path__, "gaussrender."):
        if info.name not in skip:
            yield info.name


@pytest.mark.parametrize("name", sorted(_modules()))
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


def test_import_loads_neither_triton_nor_cuda():
    code = "import sys, gaussrender; print('triton' in sys.modules, 'gaussrender.render._triton' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
