"""The Lightning callback against the real lightning package, on the CPU with a toy module."""

import warnings

import numpy as np
import pytest
import torch

import gaussrender as gr
from gaussrender.metrics import RenderedViewMetrics

from .conftest import IMAGE_SIZE, TOY, toy_batch

pytest.importorskip("lightning", reason="lightning is not installed (pip install 'gaussrender[lightning]')")
import lightning.pytorch as pl  # noqa: E402
from lightning.pytorch.loggers import CSVLogger, Logger  # noqa: E402

from gaussrender.integrations.lightning import RenderedViewsCallback, comparison_pictures  # noqa: E402


class Board:
    """Records ``add_image`` calls with TensorBoard's ``SummaryWriter`` signature."""

    def __init__(self):
        self.images = []

    def add_image(self, tag, img_tensor, global_step=None, walltime=None, dataformats="CHW"):
        self.images.append((tag, np.asarray(img_tensor), global_step, dataformats))


class BoardLogger(Logger):
    """A real lightning ``Logger`` whose ``experiment`` takes images as TensorBoard's does."""

    def __init__(self):
        super().__init__()
        self.board = Board()
        self.metrics = []

    @property
    def name(self):
        return "board"

    @property
    def version(self):
        return 0

    @property
    def experiment(self):
        return self.board

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        self.metrics.append((dict(metrics), step))


def _data(n, with_cameras=True):
    """n batches of 2 samples: (features, labels, intrinsics, poses); features are noisy
    one-hot labels, so a 1x1x1 convolution can learn the task."""
    batches = []
    for i in range(n):
        _, labels, k, pose = toy_batch(batch=2, seed=i)
        x = torch.nn.functional.one_hot(labels.clamp_max(2), 3).permute(0, 4, 1, 2, 3).float()
        x = x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(100 + i))
        batches.append((x, labels, k, pose) if with_cameras else (x, labels))
    return batches


def _loader(batches):
    return torch.utils.data.DataLoader(batches, batch_size=None)


class ToyModule(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.head = torch.nn.Conv3d(3, TOY.num_classes, 1)
        self.loss = gr.GaussRenderLoss(TOY, bev_size=16, seed=0, backend="torch")

    def _cams(self, batch):
        return dict(intrinsics=batch[2], cam_from_grid=batch[3], image_size=IMAGE_SIZE) if len(batch) == 4 else {}

    def training_step(self, batch, batch_idx):
        logits = self.head(batch[0])
        cams = self._cams(batch)
        out = (
            self.loss(logits, batch[1], **cams)
            if cams
            else gr.GaussRenderLoss(TOY, views=("bev",), bev_size=16, backend="torch")(logits, batch[1])
        )
        self.log("train/loss", out["loss"])
        return out["loss"]

    def validation_step(self, batch, batch_idx):
        return {"logits": self.head(batch[0]), "labels": batch[1], **self._cams(batch)}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def _trainer(tmp_path, loggers, callback):
    return pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=loggers,
        callbacks=[callback],
        limit_train_batches=2,
        limit_val_batches=5,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )


def test_callback_logs_pictures_and_metrics(tmp_path):
    train, val = _data(2), _data(5)
    model = ToyModule()
    board, csv = BoardLogger(), CSVLogger(tmp_path / "csv")
    callback = RenderedViewsCallback(TOY, every_n_steps=2, image_scale=1.0, bev_size=16, save_dir=tmp_path / "png")
    trainer = _trainer(tmp_path, [board, csv], callback)
    trainer.fit(model, _loader(train), _loader(val))

    # batches 0, 2, 4 of the validation epoch: camera and BEV pictures, at the trained step
    tags = [(t, s, f) for t, _, s, f in board.board.images]
    assert tags == [(f"gaussrender/{v}", 2, "HWC") for _ in range(3) for v in ("camera", "bev")]
    for _, image, _, _ in board.board.images:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert len(list((tmp_path / "png").glob("*.png"))) == 6

    # the logged metrics are RenderedViewMetrics over every validation batch, after training
    ref = RenderedViewMetrics(TOY, bev_size=16)
    with torch.no_grad():
        for x, labels, k, pose in val:
            ref.update(model.head(x), labels, k, pose, IMAGE_SIZE)  # logits: the release's rule
    want = ref.compute()
    logged = trainer.callback_metrics
    for name in ("image_iou", "image_miou", "depth_l1", "bev_iou", "bev_miou", "bev_depth_l1"):
        assert float(logged[f"gaussrender/{name}"]) == pytest.approx(float(want[name]), rel=1e-6)
    assert any("gaussrender/image_miou" in m for m, _ in board.metrics)
    # the CSV logger (no images) got the metrics too
    csv_text = (tmp_path / "csv").rglob("metrics.csv").__next__().read_text()
    assert "gaussrender/bev_miou" in csv_text


def test_metric_covers_every_batch_whatever_every_n_steps(tmp_path):
    # the case: pictures every 100 batches must not thin out the epoch's metrics
    train, val = _data(2), _data(5)
    model = ToyModule()
    board = BoardLogger()
    callback = RenderedViewsCallback(TOY, every_n_steps=100, image_scale=0.5, bev_size=16)
    trainer = _trainer(tmp_path, [board], callback)
    trainer.fit(model, _loader(train), _loader(val))
    assert [t for t, *_ in board.board.images] == ["gaussrender/camera", "gaussrender/bev"]  # batch 0 only
    plain = RenderedViewMetrics(TOY, bev_size=16, image_scale=0.5)
    with torch.no_grad():
        for x, labels, k, pose in val:
            plain.update(model.head(x), labels, k, pose, IMAGE_SIZE)  # logits, as the callback scores them
    want = plain.compute()
    for name in ("image_iou", "image_miou", "depth_l1", "bev_iou", "bev_miou", "bev_depth_l1"):
        assert float(trainer.callback_metrics[f"gaussrender/{name}"]) == pytest.approx(float(want[name]), rel=1e-6)


def test_pictures_without_an_image_logger_are_dropped_with_a_warning(tmp_path):
    train, val = _data(1), _data(3)
    callback = RenderedViewsCallback(TOY, every_n_steps=1, bev_size=16)
    trainer = _trainer(tmp_path, [CSVLogger(tmp_path / "csv")], callback)
    with pytest.warns(UserWarning, match="pictures are dropped.*save_dir") as record:
        trainer.fit(ToyModule(), _loader(train), _loader(val))
    assert sum("pictures are dropped" in str(w.message) for w in record) == 1  # said once, not per batch
    assert "gaussrender/bev_miou" in trainer.callback_metrics  # the metrics are kept
    # with save_dir the same run writes them instead, silently
    saved = RenderedViewsCallback(TOY, every_n_steps=1, bev_size=16, save_dir=tmp_path / "png")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*pictures are dropped")
        _trainer(tmp_path, [CSVLogger(tmp_path / "csv2")], saved).fit(ToyModule(), _loader(train), _loader(val))
    assert len(list((tmp_path / "png").glob("*.png"))) == 6


def test_comparison_pictures_show_prediction_and_truth_side_by_side():
    logits, labels, k, pose = toy_batch(batch=1)
    perfect = 20.0 * torch.nn.functional.one_hot(labels.clamp_max(2), 3).permute(0, 4, 1, 2, 3).float()
    pics = comparison_pictures(TOY, perfect[0], labels[0], k[0], pose[0], IMAGE_SIZE, bev_size=16)
    assert set(pics) == {"camera", "bev"}
    noisy = comparison_pictures(TOY, logits[0], labels[0], k[0], pose[0], IMAGE_SIZE, bev_size=16)
    for view in pics:
        assert pics[view].shape == noisy[view].shape
        assert not np.array_equal(pics[view], noisy[view])  # the prediction panels differ
    bev_only = comparison_pictures(TOY, logits[0], labels[0], bev_size=16)
    assert set(bev_only) == {"bev"}


def test_bev_only_batches_and_bad_outputs(tmp_path):
    model = ToyModule()
    board = BoardLogger()
    callback = RenderedViewsCallback(TOY, every_n_steps=3, bev_size=16)
    trainer = _trainer(tmp_path, [board], callback)
    trainer.fit(model, _loader(_data(1, with_cameras=False)), _loader(_data(4, with_cameras=False)))
    assert [t for t, *_ in board.board.images] == ["gaussrender/bev", "gaussrender/bev"]
    assert "gaussrender/bev_miou" in trainer.callback_metrics
    assert "gaussrender/image_miou" not in trainer.callback_metrics  # NaN without cameras: not logged

    class Bad(ToyModule):
        def validation_step(self, batch, batch_idx):
            return self.head(batch[0])

    with pytest.raises(ValueError, match="'logits'"):
        _trainer(tmp_path, [BoardLogger()], RenderedViewsCallback(TOY, bev_size=16)).fit(
            Bad(), _loader(_data(1, with_cameras=False)), _loader(_data(1, with_cameras=False))
        )
    with pytest.raises(ValueError, match="every_n_steps"):
        RenderedViewsCallback(TOY, every_n_steps=0)
