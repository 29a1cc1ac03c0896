"""Finding NaN and infinity in a model's gradients and parameters, and the error that names them.

The training step (:meth:`gaussrender.train.loop.Trainer.train_step`) checks the gradient
norm before the optimiser step and the parameters after it; both searches cost one fused
kernel and one host sync when everything is finite, and name the faulty parameters when not.
"""

from __future__ import annotations

import math

import torch

__all__ = ["NonFiniteLossError", "clip_gradients", "nonfinite_parameters"]


class NonFiniteLossError(FloatingPointError):
    """A loss term, the gradient norm or a parameter was NaN or infinite; the message names
    which one(s) and the step."""


def clip_gradients(model: torch.nn.Module, max_norm: float | None) -> tuple[float, list[str]]:
    """Global L2 norm of ``model``'s gradients, clipped to ``max_norm`` (None: not clipped) when finite.

    Returns:
        ``(norm before clipping, names of the parameters whose gradient norm is NaN/inf)``.
        Unlike ``clip_grad_norm_``, a non-finite norm leaves the gradients as they are
        (not all scaled by NaN), so the faulty parameters can be named.
    """
    named = [(n, p.grad) for n, p in model.named_parameters() if p.grad is not None]
    if not named:
        return 0.0, []
    grads = [g for _, g in named]
    norms = torch._foreach_norm(grads, 2.0)  # one fused kernel per device and dtype
    device = grads[0].device
    total = float(torch.linalg.vector_norm(torch.stack([n.float().to(device) for n in norms])))
    if not math.isfinite(total):
        return total, [name for (name, _), n in zip(named, norms) if not bool(torch.isfinite(n))]
    if max_norm is not None and total > max_norm:
        torch._foreach_mul_(grads, max_norm / (total + 1e-6))
    return total, []


def nonfinite_parameters(model: torch.nn.Module) -> list[str]:
    """Names of ``model``'s parameters holding a NaN or inf.

    One fused max-abs norm over all parameters decides (a single host sync per call);
    the per-parameter search runs only when something is wrong.
    """
    named = [(n, p) for n, p in model.named_parameters()]
    if not named:
        return []
    norms = torch._foreach_norm([t.detach() for _, t in named], float("inf"))
    # the max-abs norm is NaN or inf exactly when the tensor holds a NaN or an inf
    if bool(torch.isfinite(torch.stack([n.float().to(norms[0].device) for n in norms])).all()):
        return []
    return [n for n, t in named if not bool(torch.isfinite(t.detach()).all())]
