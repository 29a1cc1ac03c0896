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
