"""The mmengine integration against the real mmengine package (pure Python, CPU)."""

import pytest
import torch

import gaussrender as gr
from gaussrender.metrics import RenderedViewMetrics

from .conftest import IMAGE_SIZE, TOY, toy_batch

mmengine = pytest.importorskip("mmengine", reason="mmengine is not installed (pip install 'gaussrender[mmengine]')")
from mmengine.model import BaseModel  # noqa: E402
from mmengine.optim import OptimWrapper  # noqa: E402
from mmengine.registry import METRICS, MODELS  # noqa: E402

from gaussrender.integrations import mmengine as gr_mm  # noqa: E402  (registers on import)

OPTIONS = dict(weight=10.0, bev_size=16, seed=3, backend="torch")


class ToyOccupancy(BaseModel):
    """A 1x1x1 convolution from a feature volume to logits, supervised by the registered loss."""

    def __init__(self, loss_cfg: dict) -> None:
        super().__init__()
        self.head = torch.nn.Conv3d(4, TOY.num_classes, 1, dtype=torch.float64)
        self.loss_render = MODELS.build(loss_cfg)

    def forward(self, inputs, data_samples=None, mode="tensor"):
        logits = self.head(inputs)
        if mode == "loss":
            s = data_samples
            return self.loss_render(logits, s["labels"], s["intrinsics"], s["cam_from_grid"], IMAGE_SIZE)
        return logits


def _data():
    _, labels, k, pose = toy_batch(dtype=torch.float64)
    inputs = torch.randn(2, 4, *TOY.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return inputs, {"labels": labels, "intrinsics": k, "cam_from_grid": pose}


def test_registered_under_the_plain_names():
    assert MODELS.get("GaussRenderLoss") is gr_mm.GaussRenderLossMM
    assert METRICS.get("RenderedViewMetrics") is gr_mm.RenderedViewMetricMM
    built = MODELS.build(dict(type="GaussRenderLoss", grid="occ3d", weight=5.0))
    assert isinstance(built, gr.GaussRenderLoss) and built.grid is gr.OCC3D_NUSCENES and built.options.weight == 5.0
    gr_mm.register()  # idempotent


@pytest.mark.parametrize("extra", [{}, dict(views=("bev",), depth=False)])
def test_parse_losses_gives_the_plain_total_and_gradients(extra):
    model = ToyOccupancy(dict(type="GaussRenderLoss", grid=TOY, **OPTIONS, **extra))
    inputs, samples = _data()
    losses = model(inputs, samples, mode="loss")
    expected_keys = (
        {"loss_render_bev"} if extra else {f"loss_render_{t}" for t in ("cam", "cam_depth", "bev", "bev_depth")}
    )
    assert set(losses) == expected_keys
    total, log_vars = model.parse_losses(losses)
    grads = torch.autograd.grad(total, list(model.head.parameters()))

    # the same model output through the plain loss, same seed (same camera draw)
    plain = gr.GaussRenderLoss(TOY, **OPTIONS, **extra)
    out = plain(model.head(inputs), samples["labels"], samples["intrinsics"], samples["cam_from_grid"], IMAGE_SIZE)
    assert out["loss"] > 0
    torch.testing.assert_close(total, out["loss"], rtol=1e-12, atol=0)
    ref = torch.autograd.grad(out["loss"], list(model.head.parameters()))
    for g, r in zip(grads, ref):
        assert r.abs().sum() > 0
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-14)
    # each logged term is the weighted term of the plain loss
    for key in expected_keys:
        torch.testing.assert_close(log_vars[key], 10.0 * out[key.removeprefix("loss_render_")], rtol=1e-12, atol=0)


def test_the_plain_loss_with_a_loss_prefix_is_what_overcounts():
    # the failure the wrapper exists for: total + prefixed unweighted terms = 1.1 x
    inputs, samples = _data()
    logits = torch.randn(2, 3, *TOY.shape, dtype=torch.float64)
    out = gr.GaussRenderLoss(TOY, prefix="loss_render_", **OPTIONS)(
        logits, samples["labels"], samples["intrinsics"], samples["cam_from_grid"], IMAGE_SIZE
    )
    total, _ = BaseModel.parse_losses(None, out)
    torch.testing.assert_close(total, 1.1 * out["loss"], rtol=1e-12, atol=0)


def test_train_step_with_an_optim_wrapper_and_an_empty_scene():
    model = ToyOccupancy(dict(type="GaussRenderLoss", grid=TOY, **OPTIONS))
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    inputs, samples = _data()
    before = model.head.weight.detach().clone()
    log_vars = model.train_step({"inputs": inputs, "data_samples": samples}, optim)
    assert set(log_vars) == {
        "loss",
        "loss_render_cam",
        "loss_render_cam_depth",
        "loss_render_bev",
        "loss_render_bev_depth",
    }
    assert not torch.equal(model.head.weight, before)
    # all-empty ground truth and prediction: zero loss, still differentiable (backward runs)
    empty = dict(samples, labels=torch.zeros_like(samples["labels"]))
    with torch.no_grad():
        model.head.bias.copy_(torch.tensor([50.0, -50.0, -50.0]))
    log_vars = model.train_step({"inputs": inputs, "data_samples": empty}, optim)
    assert log_vars["loss"] == 0


def test_prefix_must_contain_loss():
    with pytest.raises(ValueError, match="prefix"):
        MODELS.build(dict(type="GaussRenderLoss", grid=TOY, prefix="render_"))


def test_metric_matches_the_torchmetrics_metric_over_the_dataset():
    logits, labels, k, pose = toy_batch(batch=3, seed=4)
    pred = logits.argmax(1)
    metric = METRICS.build(dict(type="RenderedViewMetrics", grid=TOY, bev_size=16))
    for lo, hi in [(0, 2), (2, 3)]:  # two batches of data samples
        samples = [
            {
                "pred_occ": pred[i],
                "gt_occ": labels[i],
                "intrinsics": k[i],
                "cam_from_grid": pose[i],
                "image_size": IMAGE_SIZE,
            }
            for i in range(lo, hi)
        ]
        metric.process({}, samples)
    got = metric.evaluate(size=3)
    ref = RenderedViewMetrics(TOY, bev_size=16)
    ref.update(pred, labels, k, pose, IMAGE_SIZE)
    want = ref.compute()
    assert set(got) == {
        f"render/{k}" for k in ("image_iou", "image_miou", "depth_l1", "bev_iou", "bev_miou", "bev_depth_l1")
    }
    for key, value in got.items():
        assert value == pytest.approx(float(want[key.split("/")[1]]), rel=1e-12, nan_ok=True)
    assert 0 < got["render/image_miou"] < 1


def test_loss_weight_is_mmdets_name_for_weight():
    inputs, samples = _data()
    logits = torch.randn(2, 3, *TOY.shape, dtype=torch.float64)
    args = (logits, samples["labels"], samples["intrinsics"], samples["cam_from_grid"], IMAGE_SIZE)
    base = dict(OPTIONS)
    base.pop("weight")

    def total(**weight):
        losses = MODELS.build(dict(type="GaussRenderLoss", grid=TOY, **base, **weight))(*args)
        return BaseModel.parse_losses(None, losses)[0]

    one = total(loss_weight=1.0)
    assert one > 0
    torch.testing.assert_close(total(loss_weight=3.0), 3.0 * one, rtol=1e-12, atol=0)
    torch.testing.assert_close(total(loss_weight=3.0), total(weight=3.0), rtol=0, atol=0)
    torch.testing.assert_close(total(), 10.0 * one, rtol=1e-12, atol=0)  # the default stays 10
    with pytest.raises(ValueError, match="loss_weight.*not both"):
        MODELS.build(dict(type="GaussRenderLoss", grid=TOY, loss_weight=1.0, weight=2.0))


def _mmdet3d_sample(pred, gt, k, pose, via="lidar2cam"):
    """A data sample as mmdet3d builds it: occupancy as data fields, calibration in metainfo
    (cam2img 4x4, lidar2cam or only lidar2img = cam2img @ lidar2cam, img_shape per camera)."""
    from mmengine.structures import BaseDataElement

    cam2img = torch.eye(4, dtype=torch.float64).repeat(k.shape[0], 1, 1)
    cam2img[:, :3, :3] = k.double()
    meta = dict(cam2img=cam2img.numpy().tolist(), img_shape=[IMAGE_SIZE] * k.shape[0])
    if via == "lidar2cam":
        meta["lidar2cam"] = pose.double().numpy()
    else:
        meta["lidar2img"] = (cam2img @ pose.double()).numpy()
    return BaseDataElement(metainfo=meta, pred_occ=pred, gt_occ=gt)


@pytest.mark.parametrize("via", ["lidar2cam", "lidar2img"])
def test_metric_reads_mmdet3d_data_samples(via):
    logits, labels, k, pose = toy_batch(batch=2, seed=5)
    pred = logits.argmax(1)
    metric = METRICS.build(dict(type="RenderedViewMetrics", grid=TOY, bev_size=16, grid_frame="lidar"))
    metric.process({}, [_mmdet3d_sample(pred[i], labels[i], k[i], pose[i], via) for i in range(2)])
    got = metric.evaluate(size=2)
    ref = RenderedViewMetrics(TOY, bev_size=16)
    ref.update(pred, labels, k, pose, IMAGE_SIZE)
    want = ref.compute()
    for key, value in got.items():
        assert value == pytest.approx(float(want[key.split("/")[1]]), rel=1e-6, nan_ok=True)
    unknown = METRICS.build(dict(type="RenderedViewMetrics", grid=TOY, bev_size=16))  # a grid of no known frame
    with pytest.raises(ValueError, match="grid_frame"):
        unknown.process({}, [_mmdet3d_sample(pred[0], labels[0], k[0], pose[0], via)])


def test_loss_cameras_from_mmdet3d_data_samples():
    _, labels, k, pose = toy_batch(dtype=torch.float64)
    samples = [_mmdet3d_sample(None, None, k[i], pose[i]) for i in range(2)]
    cams = gr_mm.cameras_from_samples(samples, TOY, grid_frame="lidar")
    torch.testing.assert_close(cams["intrinsics"], k.float())
    torch.testing.assert_close(cams["cam_from_grid"], pose.float())
    assert cams["image_size"] == IMAGE_SIZE
    logits = torch.randn(2, 3, *TOY.shape, dtype=torch.float64)
    loss = MODELS.build(dict(type="GaussRenderLoss", grid=TOY, **OPTIONS))
    via_samples = BaseModel.parse_losses(None, loss(logits, labels, **cams))[0]
    loss = MODELS.build(dict(type="GaussRenderLoss", grid=TOY, **OPTIONS))
    direct = BaseModel.parse_losses(None, loss(logits, labels, k, pose, IMAGE_SIZE))[0]
    torch.testing.assert_close(via_samples, direct, rtol=1e-5, atol=1e-7)
    # or the data samples themselves
    loss = MODELS.build(dict(type="GaussRenderLoss", grid=TOY, **OPTIONS))
    losses = loss(logits, labels, data_samples=samples, grid_frame="lidar")
    torch.testing.assert_close(BaseModel.parse_losses(None, losses)[0], direct, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="not both"):
        loss(logits, labels, k, pose, IMAGE_SIZE, data_samples=samples)
    with pytest.raises(KeyError, match="lidar2cam"):
        gr_mm.cameras_from_samples([{"cam2img": k[0]}], TOY, grid_frame="lidar")
    with pytest.raises(ValueError, match="grid_frame"):
        gr_mm.cameras_from_samples(samples, TOY)
    # the presets know their frame: Occ3D's grid is the ego frame (ego2img / ego2cam)
    ego = [{"cam2img": k[0], "ego2cam": pose[0], "img_shape": (24, 32, 3)}]
    assert gr_mm.cameras_from_samples(ego, "occ3d")["image_size"] == (24, 32)


def test_metric_scores_logits_with_the_release_rule_when_the_samples_have_them():
    logits, labels, k, pose = toy_batch(batch=2, seed=5)
    metric = METRICS.build(dict(type="RenderedViewMetrics", grid=TOY, bev_size=16))
    samples = [
        {
            "pred_occ": logits[i].argmax(0),  # labels too: the logits win
            "pred_logits": logits[i],
            "gt_occ": labels[i],
            "intrinsics": k[i],
            "cam_from_grid": pose[i],
            "image_size": IMAGE_SIZE,
        }
        for i in range(2)
    ]
    metric.process({}, samples)
    got = metric.evaluate(size=2)
    soft, hard = RenderedViewMetrics(TOY, bev_size=16), RenderedViewMetrics(TOY, bev_size=16)
    soft.update(logits, labels, k, pose, IMAGE_SIZE)
    hard.update(logits.argmax(1), labels, k, pose, IMAGE_SIZE)
    for key, value in soft.compute().items():
        if value.dim() == 0:
            assert got[f"render/{key}"] == pytest.approx(float(value), rel=1e-12, nan_ok=True)
    assert not torch.equal(soft.image_confmat, hard.image_confmat)  # the rule made a difference
    # logits under pred_key alone are scored the same way
    only = METRICS.build(dict(type="RenderedViewMetrics", grid=TOY, bev_size=16, logits_key=None))
    only.process({}, [{**s, "pred_occ": s["pred_logits"]} for s in samples])
    assert only.evaluate(size=2) == pytest.approx(got, nan_ok=True)
