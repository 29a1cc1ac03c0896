"""The three examples under README.md's "Add the loss to your training loop" run as written.

Each ```python block of that section is executed as it stands. What a user brings (logits,
labels, cameras, a network, data loaders) is stood in by small tensors defined here, and the
Occ3D grid the examples name is swapped (``gr.OCC3D_NUSCENES`` and the preset ``"occ3d"``)
for one with Occ3D's classes and range but 50 x 50 x 4 voxels of 1.6 m, and the nuScenes image size they pass,
``(900, 1600)``, is replaced by ``(90, 160)`` in the code before it runs (with intrinsics to
match), so that each example runs in about a second.
"""

import dataclasses
import re
from pathlib import Path

import pytest
import torch

import gaussrender as gr
from gaussrender.geometry import grid as grid_module

from .test_lightning import BoardLogger

README = Path(__file__).resolve().parents[2] / "README.md"
# Occ3D's range and classes with 1.6 m voxels: what the cameras see stays the same
SMALL_OCC3D = dataclasses.replace(gr.OCC3D_NUSCENES, voxel_size=1.6, shape=(50, 50, 4), gaussian_scale=1.0)


def _blocks() -> list[str]:
    text = README.read_text()
    section = text.split("## Add the loss to your training loop", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def _code(i: int) -> str:
    """Block ``i`` with the image size shrunk tenfold (see the module docstring)."""
    block = _blocks()[i]
    return block.replace("image_size=(900, 1600)", "image_size=SMALL_IMAGE")


SMALL_IMAGE = (90, 160)


@pytest.fixture
def small_occ3d(monkeypatch, tmp_path):
    monkeypatch.setattr(gr, "OCC3D_NUSCENES", SMALL_OCC3D)
    monkeypatch.setitem(grid_module.PRESETS, "occ3d", SMALL_OCC3D)
    monkeypatch.chdir(tmp_path)
    return SMALL_OCC3D


def _stand_ins(batch=1):
    g = SMALL_OCC3D
    labels = torch.full((batch, *g.shape), g.empty_index)
    labels[:, :, :, 0] = 11  # driveable surface
    labels[:, 28:30, 23:27, 1] = 4  # a car ~6 m ahead
    labels[:, 0, 0, 0] = 255
    logits = torch.randn(batch, g.num_classes, *g.shape, generator=torch.Generator().manual_seed(0))
    k, t, _ = gr.nuscenes_rig(SMALL_IMAGE)
    return logits, labels, k.expand(batch, -1, -1, -1), t.expand(batch, -1, -1, -1)


def test_readme_has_the_three_examples():
    blocks = _blocks()
    assert len(blocks) == 3
    assert "GaussRenderLoss(" in blocks[0]
    assert "custom_imports" in blocks[1]
    assert "RenderedViewsCallback" in blocks[2]


def test_plain_loop_example(small_occ3d):
    logits, labels, K, T = _stand_ins()
    logits.requires_grad_(True)
    loss_3d = torch.nn.functional.cross_entropy(logits, labels, ignore_index=255)
    ns = dict(logits=logits, labels=labels, K=K, T=T, loss_3d=loss_3d, SMALL_IMAGE=SMALL_IMAGE)
    assert "image_size=(900, 1600)" in _blocks()[0]
    exec(_code(0), ns)
    assert ns["render_loss"].grid is small_occ3d
    assert ns["out"]["cam"] > 0 and ns["out"]["bev"] > 0
    ns["loss"].backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_mmengine_config_example(small_occ3d, tmp_path):
    pytest.importorskip("mmengine", reason="mmengine is not installed (pip install 'gaussrender[mmengine]')")
    from mmengine.config import Config
    from mmengine.model import BaseModel
    from mmengine.registry import METRICS, MODELS

    path = tmp_path / "config.py"
    path.write_text(_blocks()[1])  # the image size appears only in a comment there
    cfg = Config.fromfile(str(path))  # imports custom_imports, as mmengine's tools do
    loss_render = MODELS.build(cfg.loss_render)
    logits, labels, K, T = _stand_ins()
    logits.requires_grad_(True)
    cams = dict(intrinsics=K, cam_from_grid=T, image_size=SMALL_IMAGE)
    losses = loss_render(logits, labels, **cams, generator=torch.Generator().manual_seed(0))
    total, _ = BaseModel.parse_losses(None, losses)
    plain = gr.GaussRenderLoss("occ3d")(logits, labels, **cams, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(total, plain["loss"], rtol=1e-6, atol=0)

    metric = METRICS.build(cfg.val_evaluator)
    sample = dict(
        pred_occ=logits[0].argmax(0), gt_occ=labels[0], intrinsics=K[0], cam_from_grid=T[0], image_size=SMALL_IMAGE
    )
    metric.process({}, [sample])
    result = metric.evaluate(size=1)
    assert 0 <= result["render/bev_miou"] <= 1 and 0 <= result["render/image_iou"] <= 1


def test_lightning_example(small_occ3d, tmp_path):
    pytest.importorskip("lightning", reason="lightning is not installed (pip install 'gaussrender[lightning]')")
    import lightning

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Conv3d(2, small_occ3d.num_classes, 1)

        def forward(self, x):
            return self.head(x)

        def loss_3d(self, logits, labels):
            return torch.nn.functional.cross_entropy(logits, labels, ignore_index=255)

    ns: dict = {"SMALL_IMAGE": SMALL_IMAGE}
    assert "image_size=(900, 1600)" in _blocks()[2]
    exec(_code(2), ns)
    callback = next(c for c in ns["trainer"].callbacks if type(c).__name__ == "RenderedViewsCallback")
    _, labels, K, T = _stand_ins(batch=1)
    inputs = torch.randn(1, 2, *small_occ3d.shape, generator=torch.Generator().manual_seed(1))
    batches = [dict(inputs=inputs, labels=labels, K=K, T=T)]
    loader = torch.utils.data.DataLoader(batches, batch_size=None)
    logger = BoardLogger()
    trainer = lightning.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=logger,
        callbacks=[callback],
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(ns["Occupancy"](Net()), loader, loader)
    assert [tag for tag, *_ in logger.board.images] == ["gaussrender/camera", "gaussrender/bev"]
    assert "gaussrender/image_miou" in trainer.callback_metrics
    assert "loss_render" in trainer.callback_metrics
