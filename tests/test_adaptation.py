import pytest
import torch

from fastadapt.adaptation import AdaptBatch, adapt, adapt_step, inner_loss, per_task_log_probs
from fastadapt.optim.trpo import (
    conjugate_gradient,
    conjugate_gradient_with_residual,
    flatten,
    hessian_vector_product,
    unflatten,
)
from fastadapt.policies import MLPPolicy


def tiny_problem(tasks=3, T=4, E=3, seed=0, context=0):
    torch.manual_seed(seed)
    pol = MLPPolicy(2, 2, False, hidden=(5,), activation="tanh", context_dim=context)
    params = {
        k: v.double().requires_grad_(True)
        for k, v in pol.init_params(torch.Generator().manual_seed(seed)).items()
    }
    params["layers.1.weight"].data.normal_(0, 0.5)
    if context:
        params["context"].data.normal_(0, 0.5)  # a learned start, not the zeros of init

    def batch():
        mask = torch.ones(tasks, T, E, dtype=torch.float64)
        mask[0, -1, 0] = 0
        return AdaptBatch(
            torch.randn(tasks, T, E, 2, dtype=torch.float64),
            torch.randn(tasks, T, E, 2, dtype=torch.float64),
            torch.randn(tasks, T, E, dtype=torch.float64),
            mask,
        )

    return pol, params, batch(), batch()


def meta_objective(pol, params, train, valid, lr, first_order=False):
    phi = adapt(pol, params, [train], [lr], first_order)
    return inner_loss(pol, phi, valid).sum()


@pytest.mark.parametrize("context", [0, 3], ids=["maml", "cavia"])
def test_second_order_meta_gradient_matches_finite_differences(context):
    pol, params, train, valid = tiny_problem(context=context)
    names = list(params)
    grads = torch.autograd.grad(
        meta_objective(pol, params, train, valid, 0.5), [params[k] for k in names]
    )
    flat = flatten([params[k].detach() for k in names])
    eps = 1e-6
    fd = torch.zeros_like(flat)
    for i in range(flat.numel()):
        for sign in (1, -1):
            x = flat.clone()
            x[i] += sign * eps
            p = dict(
                zip(
                    names,
                    [t.requires_grad_(True) for t in unflatten(x, [params[k] for k in names])],
                    strict=True,
                )
            )
            fd[i] += sign * float(meta_objective(pol, p, train, valid, 0.5).detach()) / (2 * eps)
    torch.testing.assert_close(flatten(grads), fd, rtol=1e-5, atol=1e-7)


def test_first_order_drops_exactly_the_second_order_term():
    pol, params, train, valid = tiny_problem(tasks=1)
    names = list(params)
    lr = 0.5
    so = flatten(
        torch.autograd.grad(meta_objective(pol, params, train, valid, lr), list(params.values()))
    )
    fo = flatten(
        torch.autograd.grad(
            meta_objective(pol, params, train, valid, lr, True), list(params.values())
        )
    )
    # FO gradient = dL/dphi at phi(theta)
    phi = {
        k: v.detach().requires_grad_(True)[0] for k, v in adapt(pol, params, [train], [lr]).items()
    }
    dl_dphi = flatten(
        torch.autograd.grad(
            inner_loss(pol, {k: v.unsqueeze(0) for k, v in phi.items()}, valid).sum(),
            list(phi.values()),
        )
    )
    torch.testing.assert_close(fo, dl_dphi)
    # SO gradient = (I - lr * H_inner) dL/dphi with H the Hessian of the inner loss at theta
    flat = flatten([params[k].detach() for k in names])

    def inner(x):
        p = dict(zip(names, unflatten(x, [params[k] for k in names]), strict=True))
        return inner_loss(pol, {k: v.unsqueeze(0) for k, v in p.items()}, train).sum()

    H = torch.autograd.functional.hessian(inner, flat)
    torch.testing.assert_close(so, dl_dphi - lr * H @ dl_dphi)


def test_lvc_meta_gradient_adds_exactly_the_pre_adaptation_score_term():
    """Through an LVC inner step the meta-gradient is (I - lr (H + S)) dL/dphi, with H the VPG
    inner loss's Hessian and S = -sum_t A_t grad log pi grad log pi^T / n the term that credits
    the policy that sampled the pre-adaptation episodes; the adapted parameters are the same."""
    pol, params, train, valid = tiny_problem(tasks=1)
    names, lr = list(params), 0.5
    vpg = adapt(pol, params, [train], [lr])
    lvc = adapt(pol, params, [train], [lr], objective="lvc")
    for k in names:
        torch.testing.assert_close(vpg[k], lvc[k])
    so_lvc = flatten(torch.autograd.grad(inner_loss(pol, lvc, valid).sum(), list(params.values())))
    phi = {k: v.detach().requires_grad_(True) for k, v in vpg.items()}
    dl_dphi = flatten(torch.autograd.grad(inner_loss(pol, phi, valid).sum(), list(phi.values())))
    flat = flatten([params[k].detach() for k in names])

    def inner(x):
        p = dict(zip(names, unflatten(x, [params[k] for k in names]), strict=True))
        return inner_loss(pol, {k: v.unsqueeze(0) for k, v in p.items()}, train).sum()

    H = torch.autograd.functional.hessian(inner, flat)
    rows = []  # grad log pi of every real step
    logp = per_task_log_probs(pol, params, train.obs, train.actions)[0].flatten()
    for i in range(logp.numel()):
        rows.append(flatten(torch.autograd.grad(logp[i], list(params.values()), retain_graph=True)))
    G = torch.stack(rows)
    w = (train.advantages * train.mask)[0].flatten()
    S = -(G.T * w) @ G / train.mask.sum()
    torch.testing.assert_close(so_lvc, dl_dphi - lr * (H + S) @ dl_dphi)
    assert not torch.allclose(so_lvc, dl_dphi - lr * H @ dl_dphi)  # the term is not negligible


@pytest.mark.parametrize("context", [0, 3], ids=["maml", "cavia"])
def test_batched_adaptation_equals_per_task_loop(context):
    pol, params, train, _ = tiny_problem(tasks=4, context=context)
    batched = adapt(pol, params, [train], [0.3])
    for i in range(4):
        one = AdaptBatch(*(x[i : i + 1] for x in train[:4]))
        single = adapt(pol, params, [one], [0.3])
        for k in params:
            torch.testing.assert_close(batched[k][i], single[k][0])


def test_context_policy_adapts_only_its_context():
    pol, params, train, _ = tiny_problem(tasks=3, context=3)
    assert pol.adapted_keys == ("context",)
    phi = adapt(pol, params, [train], [0.3])
    assert phi["context"].shape == (3, 3)
    assert not torch.allclose(phi["context"], params["context"].expand(3, 3))
    for k in params:
        if k != "context":  # the network is shared, viewed per task, unchanged
            torch.testing.assert_close(phi[k], params[k].expand_as(phi[k]))
    # the context is an input beside the observation: zero first-layer columns make it unread
    w = params["layers.0.weight"].detach().clone()
    w[:, 2:] = 0
    obs = torch.randn(5, 2, dtype=torch.float64)
    plain = MLPPolicy(2, 2, False, hidden=(5,), activation="tanh")
    d_ctx = pol.dist({**params, "layers.0.weight": w}, obs)
    d_plain = plain.dist(
        {**{k: v for k, v in params.items() if k != "context"}, "layers.0.weight": w[:, :2]}, obs
    )
    torch.testing.assert_close(d_ctx.loc, d_plain.loc)


def test_meta_sgd_learning_rates_get_gradients():
    pol, params, train, valid = tiny_problem()
    lrs = {k: torch.full_like(v, 0.1).requires_grad_(True) for k, v in params.items()}
    phi = adapt(pol, params, [train], [lrs])
    g = torch.autograd.grad(inner_loss(pol, phi, valid).sum(), list(lrs.values()))
    assert all(torch.isfinite(x).all() for x in g) and any(x.abs().sum() > 0 for x in g)
    # a constant Meta-SGD learning rate equals plain MAML with that rate
    phi_const = adapt(
        pol, params, [train], [{k: torch.full_like(v, 0.1) for k, v in params.items()}]
    )
    phi_maml = adapt(pol, params, [train], [0.1])
    for k in params:
        torch.testing.assert_close(phi_const[k], phi_maml[k])


def test_inner_step_decreases_inner_loss():
    pol, params, train, _ = tiny_problem()
    before = inner_loss(pol, {k: v.detach() for k, v in params.items()}, train)
    after_params, _ = adapt_step(pol, params, train, 0.05)
    after = inner_loss(pol, after_params, train)
    assert (after < before).all()


def test_log_probs_layout():
    pol, params, train, _ = tiny_problem()
    lp = per_task_log_probs(pol, params, train.obs, train.actions)
    assert lp.shape == train.mask.shape
    d = pol.dist({k: v for k, v in params.items()}, train.obs[1, 2, 0])
    torch.testing.assert_close(lp[1, 2, 0], pol.log_prob(d, train.actions[1, 2, 0]))


def test_conjugate_gradient_solves_spd_system():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(20, 20, generator=g, dtype=torch.float64)
    A = A @ A.T + 20 * torch.eye(20, dtype=torch.float64)
    b = torch.randn(20, generator=g, dtype=torch.float64)
    x = conjugate_gradient(lambda v: A @ v, b, iters=50, residual_tol=1e-20)
    torch.testing.assert_close(x, torch.linalg.solve(A, b))


def test_conjugate_gradient_residual_gives_the_quadratic_form():
    """After few iterations (x inexact), x^T A x from the residual equals the explicit product in
    float32 as TRPO uses it."""
    g = torch.Generator().manual_seed(1)
    A = torch.randn(200, 200, generator=g)
    A = A @ A.T / 200 + 0.1 * torch.eye(200)
    b = torch.randn(200, generator=g)
    x, r = conjugate_gradient_with_residual(lambda v: A @ v, b, iters=10)
    assert (A @ x - b).norm() > 1e-3 * b.norm()  # truncated, as in TRPO
    torch.testing.assert_close(b - r, A @ x, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(x @ (b - r), x @ A @ x, rtol=1e-5, atol=0)


def test_hessian_vector_product_matches_explicit_hessian():
    x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    M = torch.randn(5, 5, dtype=torch.float64)
    f = lambda: (x @ M @ x) + x.pow(4).sum()  # noqa: E731
    hvp = hessian_vector_product(f, [x], damping=0.1)
    v = torch.randn(5, dtype=torch.float64)
    H = torch.autograd.functional.hessian(lambda y: y @ M @ y + y.pow(4).sum(), x.detach())
    torch.testing.assert_close(hvp(v), H @ v + 0.1 * v)


@pytest.mark.parametrize("lr", [[0.1], [0.1, 0.05]])
def test_inner_lr_schedule(lr):
    from fastadapt.adaptation import inner_lr_schedule

    assert inner_lr_schedule(lr, 3) == (lr + [lr[-1]] * 3)[:3]


def test_packed_batch_keeps_losses_steps_and_second_order_gradients():
    from fastadapt.adaptation import pack_batch, subsample_batch

    pol, params, train, valid = tiny_problem(tasks=3, T=5, E=4)
    # padding like a step-budget batch: task 1 has two empty episodes, task 2 short episodes
    mask = train.mask.clone()
    mask[1, :, 2:] = 0
    mask[2, 2:, :] = 0
    train = train._replace(mask=mask, advantages=train.advantages * mask)
    packed = pack_batch(train)
    assert packed.obs.shape == (3, int(mask.flatten(1).sum(1).max()), 1, 2)
    assert torch.equal(packed.mask.sum((1, 2)), mask.sum((1, 2)))
    torch.testing.assert_close(inner_loss(pol, params, packed), inner_loss(pol, params, train))
    a, _ = adapt_step(pol, params, train, 0.3)
    b, _ = adapt_step(pol, params, packed, 0.3)
    for k in a:
        torch.testing.assert_close(a[k], b[k])
    ga = torch.autograd.grad(meta_objective(pol, params, train, valid, 0.3), list(params.values()))
    gb = torch.autograd.grad(meta_objective(pol, params, packed, valid, 0.3), list(params.values()))
    for x, y in zip(ga, gb, strict=True):
        torch.testing.assert_close(x, y)
    # subsampling takes episodes of a padded batch and steps of a packed one
    assert subsample_batch(train, 2).obs.shape == (3, 5, 2, 2)
    assert subsample_batch(packed, 2).obs.shape[1:3] == ((packed.obs.shape[1] + 1) // 2, 1)
