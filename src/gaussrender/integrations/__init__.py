"""Adapters for training frameworks; each submodule imports its framework and nothing else.

* :mod:`gaussrender.integrations.mmengine`: registers ``GaussRenderLoss`` in mmengine's
  (and mmdet3d's, when installed) ``MODELS`` and ``RenderedViewMetrics`` in ``METRICS``;
  extra ``gaussrender[mmengine]``.
* :mod:`gaussrender.integrations.lightning`: :class:`RenderedViewsCallback`, which logs
  rendered prediction-vs-ground-truth pictures and the rendered-view metrics;
  extra ``gaussrender[lightning]``.

``import gaussrender`` imports neither.
"""
