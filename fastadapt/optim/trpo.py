"""TRPO's pieces: conjugate gradient, Hessian-vector products of a KL, and the constrained step.

The step follows Schulman et al. (2015) as the MAML paper used it: solve ``F x = -g`` with ``cg_iters``
conjugate-gradient iterations on Fisher-vector products, scale ``x`` to the trust region ``max_kl``,
then backtrack until the *exact* KL is within ``max_kl`` and the surrogate loss has decreased.
The curvature (the Fisher-vector product ``fvp``) may come from a cheaper approximation of the KL
than the one the line search checks (``kl``); the constraint is always enforced on the exact one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


def flatten(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate tensors into one flat vector."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(vec: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Split a flat vector into tensors shaped like ``like``."""
    out, i = [], 0
    for t in like:
        out.append(vec[i : i + t.numel()].view_as(t))
        i += t.numel()
    return out


def conjugate_gradient(
    Avp: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    iters: int = 10,
    residual_tol: float = 1e-10,
) -> torch.Tensor:
    """Approximately solve ``A x = b`` for symmetric positive-definite ``A`` given ``v -> A v``."""
    return conjugate_gradient_with_residual(Avp, b, iters, residual_tol)[0]


def conjugate_gradient_with_residual(
    Avp: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    iters: int = 10,
    residual_tol: float = 1e-10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`conjugate_gradient` that also returns the final residual ``r = b - A x``, so that
    ``x @ A @ x = x @ (b - r)`` costs no further product with ``A``."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = r @ r
    for _ in range(iters):
        if rr < residual_tol:
            break
        Ap = Avp(p)
        alpha = rr / (p @ Ap)
        x = x + alpha * p
        r = r - alpha * Ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x, r


def flat_grad(
    y: torch.Tensor,
    params: Sequence[torch.Tensor],
    create_graph: bool = False,
    retain_graph: bool | None = None,
) -> torch.Tensor:
    """``d y / d params`` as one flat vector, zeros for the parameters ``y`` does not depend on."""
    grads = torch.autograd.grad(
        y, params, retain_graph=retain_graph, create_graph=create_graph, allow_unused=True
    )
    return flatten(
        [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=True)]
    )


def hessian_vector_product(
    f: Callable[[], torch.Tensor], params: Sequence[torch.Tensor], damping: float = 0.0
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``v -> (d^2 f / d params^2) v + damping * v`` by double backward (one graph, reused)."""
    grad = flat_grad(f(), params, create_graph=True)

    def hvp(v: torch.Tensor) -> torch.Tensor:
        return flat_grad(grad @ v, params, retain_graph=True).detach() + damping * v

    return hvp


@dataclass
class TRPOInfo:
    """What one TRPO step did."""

    accepted: bool
    step_fraction: float
    kl: float
    surrogate_before: float
    surrogate_after: float
    expected_improvement: float
    backtracks: int
    cg_s: float = 0.0
    """Seconds in conjugate gradient (the Fisher's products)."""
    line_search_s: float = 0.0
    """Seconds in the line search (the exact KL and surrogate at each candidate)."""

    @property
    def surrogate_gain(self) -> float:
        """Decrease of the surrogate loss (positive is better)."""
        return self.surrogate_before - self.surrogate_after


def trpo_step(
    params: Sequence[torch.Tensor],
    loss_fn: Callable[[], torch.Tensor],
    loss_kl_fn: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    fvp: Callable[[torch.Tensor], torch.Tensor],
    max_kl: float,
    cg_iters: int = 10,
    cg_damping: float = 1e-5,
    backtrack_ratio: float = 0.5,
    max_backtracks: int = 15,
) -> TRPOInfo:
    """One trust-region step on leaf tensors ``params`` (updated in place; reverted if no step
    passes). ``loss_fn`` is the surrogate loss to decrease; ``loss_kl_fn`` returns it together with
    the exact mean KL from the current policy (evaluated in the line search); ``fvp`` maps a flat
    vector ``v`` to ``F v``, the Fisher's product (for instance :func:`hessian_vector_product` of a
    KL); ``cg_damping * v`` is added to it."""
    loss = loss_fn()
    g = flat_grad(loss, params)
    loss_before = float(loss.detach())
    t0 = time.perf_counter()
    step_dir, residual = conjugate_gradient_with_residual(
        lambda v: fvp(v) + cg_damping * v, -g, cg_iters
    )
    shs = 0.5 * float(step_dir @ (-g - residual))  # = 0.5 x^T F x without another product
    t1 = time.perf_counter()
    if not math.isfinite(shs) or shs <= 0:
        return TRPOInfo(False, 0.0, 0.0, loss_before, loss_before, 0.0, 0, t1 - t0)
    full_step = step_dir * math.sqrt(max_kl / shs)
    expected = float(-g @ full_step)
    old = [p.detach().clone() for p in params]
    frac = 1.0
    with torch.no_grad():
        for k in range(max_backtracks):
            for p, p0, s in zip(params, old, unflatten(full_step, params), strict=True):
                p.copy_(p0 + frac * s)
            new_loss_t, kl_t = loss_kl_fn()
            new_loss, kl = float(new_loss_t), float(kl_t)
            if math.isfinite(new_loss) and kl <= max_kl and new_loss < loss_before:
                t2 = time.perf_counter()
                return TRPOInfo(
                    True, frac, kl, loss_before, new_loss, expected * frac, k, t1 - t0, t2 - t1
                )
            frac *= backtrack_ratio
        for p, p0 in zip(params, old, strict=True):
            p.copy_(p0)
    t2 = time.perf_counter()
    return TRPOInfo(
        False, 0.0, 0.0, loss_before, loss_before, expected, max_backtracks, t1 - t0, t2 - t1
    )
