import dataclasses

import numpy as np
import pytest
import torch

from fastadapt.adaptation import adapt, inner_loss
from fastadapt.config import MAMLConfig
from fastadapt.errors import ConfigError
from fastadapt.learners.maml import MAML
from fastadapt.train import make_learner

SMALL = MAMLConfig(meta_batch_size=6, episodes_per_task=6, meta_iterations=3, seed=0)


def params_of(learner):
    return {k: v.detach().clone() for k, v in learner.trainable().items()}


def test_same_seed_same_parameters_other_seed_differs():
    a, b = MAML(SMALL), MAML(SMALL)
    c = MAML(dataclasses.replace(SMALL, seed=1))
    for _ in range(2):
        a.step(), b.step(), c.step()
    pa, pb, pc = params_of(a), params_of(b), params_of(c)
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert not all(torch.equal(pa[k], pc[k]) for k in pa)


@pytest.mark.parametrize(
    "algorithm,changes",
    [
        ("maml", {}),
        ("maml", {"num_inner_steps": 2, "inner_lr": (0.1, 0.05), "intermediate_weight": 0.5}),
        ("maml", {"inner_objective": "lvc", "pre_adapt_weight": 0.3}),
        ("maml", {"first_order": True, "outer": "adam"}),
        ("metasgd", {"num_inner_steps": 2}),
    ],
)
def test_meta_loss_built_while_sampling_equals_its_replay(monkeypatch, algorithm, changes):
    # the learner keeps the differentiable adaptation from sampling; replaying it from the stored
    # batches (the outer step's fallback) must give the same meta-parameters
    import fastadapt.learners.maml as maml_module

    cfg = dataclasses.replace(SMALL, **changes)
    kept = make_learner(algorithm, cfg)
    kept.step(), kept.step()
    plain = maml_module.sample_iteration
    monkeypatch.setattr(
        maml_module, "sample_iteration", lambda learner, lrs, step_fn=None: plain(learner, lrs)
    )
    replayed = make_learner(algorithm, cfg)
    replayed.step(), replayed.step()
    pa, pb = params_of(kept), params_of(replayed)
    assert len(pa) == len(pb)
    for k in pa:
        torch.testing.assert_close(pa[k], pb[k], rtol=1e-5, atol=1e-6)
    assert not all(
        torch.equal(pa[k], v) for k, v in params_of(make_learner(algorithm, cfg)).items()
    )


@pytest.mark.parametrize(
    "fvp,objective",
    [("subsampled", "vpg"), ("adapted", "vpg"), ("exact", "vpg"), ("subsampled", "lvc")],
)
def test_trpo_step_respects_max_kl(fvp, objective):
    learner = MAML(dataclasses.replace(SMALL, fvp=fvp, max_kl=0.005, inner_objective=objective))
    for _ in range(3):
        m = learner.step()
        assert m["outer/kl"] <= 0.005
        assert m["outer/accepted"] == 1.0 and m["outer/surrogate_gain"] > 0


def test_exact_kl_is_checked_on_the_replayed_adaptation():
    # the KL the learner reports after its step equals a fresh computation through adaptation
    learner = MAML(dataclasses.replace(SMALL, max_kl=0.01))
    m = learner.step()
    assert 0 < m["outer/kl"] <= 0.01


def test_short_run_improves_post_adaptation_return():
    cfg = dataclasses.replace(SMALL, meta_batch_size=10, episodes_per_task=10)
    learner = MAML(cfg)
    first = [learner.step()["return/post_adapt"] for _ in range(2)]
    for _ in range(6):
        learner.step()
    last = [learner.step()["return/post_adapt"] for _ in range(2)]
    assert sum(last) / 2 > sum(first) / 2 + 10  # Navigation2D returns start near -90


def test_adam_outer_and_first_order_run_and_change_parameters():
    for cfg in (
        dataclasses.replace(SMALL, outer="adam", outer_lr=1e-2),
        dataclasses.replace(SMALL, first_order=True),
    ):
        learner = MAML(cfg)
        before = params_of(learner)
        m = learner.step()
        assert torch.isfinite(torch.tensor(list(m.values()))).all()
        after = params_of(learner)
        assert any(not torch.equal(before[k], after[k]) for k in before)


def test_metrics_say_where_the_time_goes():
    m = MAML(SMALL).step()
    assert m["time/cg_s"] > 0 and m["time/line_search_s"] > 0
    assert m["time/cg_s"] + m["time/line_search_s"] < m["time/outer_s"]
    assert m["time/sampling_s"] + m["time/outer_s"] < m["time/iteration_s"]
    adam = MAML(dataclasses.replace(SMALL, outer="adam", outer_lr=1e-2)).step()
    assert 0 < adam["time/outer_s"] < adam["time/iteration_s"] and "time/cg_s" not in adam


def test_meta_sgd_learns_learning_rates():
    learner = make_learner("metasgd", SMALL)
    assert learner.name == "metasgd" and learner.inner_lrs
    before = {k: v.detach().clone() for k, v in learner.inner_lrs.items()}
    learner.step()
    assert any(not torch.equal(before[k], v) for k, v in learner.inner_lrs.items())


def test_pretrain_configuration_has_no_inner_steps():
    learner = MAML(dataclasses.replace(SMALL, num_inner_steps=0))
    m = learner.step()
    assert m["outer/kl"] <= SMALL.max_kl
    # pre and post are the same batch when nothing adapts
    assert m["return/pre_adapt"] == m["return/post_adapt"]


def test_two_inner_steps_with_schedule():
    learner = MAML(dataclasses.replace(SMALL, num_inner_steps=2, inner_lr=(0.1, 0.05)))
    assert learner.lrs(2) == [0.1, 0.05]
    m = learner.step()
    assert m["env_steps"] > 0


def test_discrete_family_trains():
    learner = MAML(dataclasses.replace(SMALL, env="CartPoleDynamics-v0"))
    m = learner.step()
    assert m["return/pre_adapt"] > 0


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("meta_batch_size", 0, "meta_batch_size"),
        ("inner_lr", (-0.1,), "inner_lr"),
        ("max_kl", 0.0, "max_kl"),
        ("episodes_per_task", -1, "episodes_per_task"),
        ("env", "Nope-v0", "unknown task family"),
        ("gamma", 1.5, "gamma"),
        ("env_kwargs", "{bad", "JSON"),
        ("batch_unit", "transitions", "batch_unit"),
        ("context_params", -1, "context_params"),
        ("inner_objective", "dice", "inner_objective"),
        ("pre_adapt_weight", -1.0, "pre_adapt_weight"),
        ("pre_adapt_weight", float("nan"), "pre_adapt_weight"),
        ("intermediate_weight", -0.5, "intermediate_weight"),
        ("intermediate_weight", float("inf"), "intermediate_weight"),
    ],
)
def test_bad_config_values_are_refused(field, value, match):
    with pytest.raises(ConfigError, match=match):
        MAML(dataclasses.replace(SMALL, **{field: value}))


def test_pre_adapt_weight_needs_an_inner_step():
    with pytest.raises(ConfigError, match="pre_adapt_weight needs num_inner_steps"):
        MAML(dataclasses.replace(SMALL, num_inner_steps=0, pre_adapt_weight=1.0))


def _outer_gradient(**overrides):
    """The gradient the Adam outer step applies, and the inner steps' batches it came from."""
    learner = MAML(dataclasses.replace(SMALL, outer="adam", **overrides))
    seen = {}
    outer_step, adam_step = learner._outer_step, learner.optimizer.step

    def capture_batches(batches, *args):
        seen["batches"] = batches
        return outer_step(batches, *args)

    def capture_grads(*args, **kwargs):
        seen["grad"] = {k: v.grad.clone() for k, v in learner.meta_params.items()}
        return adam_step(*args, **kwargs)

    learner._outer_step, learner.optimizer.step = capture_batches, capture_grads
    theta = {k: v.detach().clone() for k, v in learner.meta_params.items()}
    learner.step()
    return seen, theta, learner.policy


@pytest.mark.parametrize("weight", [1.0, 2.5])
def test_pre_adapt_weight_adds_the_pre_adaptation_policy_gradient(weight):
    # same seed: the same episodes; the difference is weight x the VPG gradient of the
    # pre-adaptation batch at the meta-parameters
    base, _, _ = _outer_gradient(pre_adapt_weight=0.0)
    seen, theta, policy = _outer_gradient(pre_adapt_weight=weight)
    params = {k: v.requires_grad_(True) for k, v in theta.items()}
    pre = seen["batches"][0]
    ref = torch.autograd.grad(inner_loss(policy, params, pre).mean(), list(params.values()))
    assert any(g.abs().max() > 1e-4 for g in ref)
    for (k, g), r in zip(seen["grad"].items(), ref, strict=True):
        torch.testing.assert_close(g - base["grad"][k], weight * r, atol=1e-5, rtol=1e-4)


def test_pre_adapt_weight_trpo_respects_max_kl():
    learner = MAML(dataclasses.replace(SMALL, max_kl=0.005, pre_adapt_weight=1.0))
    for _ in range(2):
        m = learner.step()
        assert m["outer/kl"] <= 0.005 and m["outer/accepted"] == 1.0


def test_intermediate_weight_needs_two_inner_steps():
    with pytest.raises(ConfigError, match="intermediate_weight needs num_inner_steps >= 2"):
        MAML(dataclasses.replace(SMALL, num_inner_steps=1, intermediate_weight=1.0))


@pytest.mark.parametrize("weight", [1.0, 0.5])
def test_intermediate_weight_adds_the_gradient_of_the_return_between_steps(weight):
    # two inner steps: the difference is weight x the policy gradient of the episodes collected
    # after the first step, through that (second-order) step
    two = dict(num_inner_steps=2, inner_lr=(0.1, 0.05))
    base, _, _ = _outer_gradient(**two)
    seen, theta, policy = _outer_gradient(intermediate_weight=weight, **two)
    params = {k: v.requires_grad_(True) for k, v in theta.items()}
    first, between = seen["batches"]
    phi1 = adapt(policy, params, [first], [0.1])
    ref = torch.autograd.grad(inner_loss(policy, phi1, between).mean(), list(params.values()))
    assert any(g.abs().max() > 1e-4 for g in ref)
    for (k, g), r in zip(seen["grad"].items(), ref, strict=True):
        torch.testing.assert_close(g - base["grad"][k], weight * r, atol=1e-5, rtol=1e-4)


def test_intermediate_weight_trpo_respects_max_kl():
    cfg = dataclasses.replace(
        SMALL, max_kl=0.005, num_inner_steps=2, inner_lr=(0.1, 0.05), intermediate_weight=1.0
    )
    learner = MAML(cfg)
    for _ in range(2):
        m = learner.step()
        assert m["outer/kl"] <= 0.005 and m["outer/accepted"] == 1.0


def test_unknown_algorithm_is_refused():
    with pytest.raises(ConfigError, match="unknown algorithm"):
        make_learner("ppo-maml", SMALL)


def recorder(seen):
    """A spy for ``maml._subsampled_fvp`` that appends its ``FisherInputs`` to ``seen``."""

    def spy(fn):
        def wrapped(inputs):
            seen.append(inputs)
            return fn(inputs)

        return wrapped

    return spy


def _fvp(mode, every, spy=None, **overrides):
    """The first TRPO step's Fisher-vector product at a fixed random vector (and its parameters).
    ``spy`` wraps ``maml._subsampled_fvp`` while the step runs."""
    import fastadapt.learners.maml as M
    import fastadapt.optim.trpo as T

    captured = {}

    def capture(params, loss_fn, loss_kl_fn, fvp, *args):
        captured.update(params=params, fvp=fvp)
        return T.TRPOInfo(False, 0, 0, 0, 0, 0, 0)

    originals = M.trpo_step, M._subsampled_fvp
    M.trpo_step = capture
    if spy is not None:
        M._subsampled_fvp = spy(M._subsampled_fvp)
    try:
        settings = {"episodes_per_task": 10, **overrides}
        cfg = dataclasses.replace(SMALL, fvp=mode, fisher_subsample=every, **settings)
        MAML(cfg).step()
    finally:
        M.trpo_step, M._subsampled_fvp = originals
    params = captured["params"]
    v = torch.randn(sum(p.numel() for p in params), generator=torch.Generator().manual_seed(0))
    return captured["fvp"](v), params, v


def test_fisher_approximations_against_the_exact_fisher_vector_product():
    exact = _fvp("exact", 1)[0]
    # the linearized Gauss-Newton Fisher on all samples is the exact one
    torch.testing.assert_close(_fvp("subsampled", 1)[0], exact, rtol=1e-4, atol=1e-6)
    # the adapted-parameter Fisher (inner Jacobian taken as identity) is close to it
    adapted = _fvp("adapted", 1)[0]
    assert float((adapted - exact).norm() / exact.norm()) < 0.1


FISHER_VARIANTS = {
    "lvc": {"inner_objective": "lvc"},
    "two steps": {"num_inner_steps": 2, "inner_lr": (0.1, 0.05)},
    "meta-sgd": {"meta_sgd": True, "num_inner_steps": 2},
    "steps unit": {"batch_unit": "steps"},
    "categorical": {"env": "CartPoleDynamics-v0", "episodes_per_task": 2},
    "context": {"context_params": 3, "inner_lr": (1.0,)},
}


@pytest.mark.parametrize("variant", FISHER_VARIANTS)
def test_subsampled_fisher_on_all_samples_is_the_exact_one(variant):
    exact = _fvp("exact", 1, **FISHER_VARIANTS[variant])[0]
    sub = _fvp("subsampled", 1, **FISHER_VARIANTS[variant])[0]
    torch.testing.assert_close(sub, exact, rtol=1e-4, atol=1e-6 * float(exact.abs().max()))


@pytest.mark.parametrize("variant", ["default", *FISHER_VARIANTS])
def test_subsampled_fisher_equals_the_hessian_of_the_linearized_kl(variant):
    from fastadapt.learners.maml import linearized_kl
    from fastadapt.optim.trpo import hessian_vector_product

    seen = []
    product, params, v = _fvp(
        "subsampled", 3, spy=recorder(seen), **FISHER_VARIANTS.get(variant, {})
    )
    reference = hessian_vector_product(linearized_kl(seen[-1]), params)(v)
    torch.testing.assert_close(
        product, reference, rtol=1e-4, atol=1e-6 * float(reference.abs().max())
    )


def test_step_batch_unit_trains_and_evaluates():
    from fastadapt.config import EvalConfig
    from fastadapt.evaluation import evaluate_learner

    learner = MAML(dataclasses.replace(SMALL, batch_unit="steps"))
    for _ in range(2):
        m = learner.step()
        assert m["outer/kl"] <= learner.config.max_kl
    # whole episodes up to 6 x 100 steps per task, two collections per iteration
    assert learner.env_steps >= 2 * 2 * 6 * 6 * 100
    ev = EvalConfig(num_tasks=3, episodes_per_step=2, num_steps=1, baselines=(), batch_unit="steps")
    res = evaluate_learner(learner, ev, progress=False)
    assert res["protocol"]["batch_unit"] == "steps"
    assert all(np.isfinite(res["returns"]["maml"]["mean"]))
    with pytest.raises(ConfigError, match="batch_unit"):
        dataclasses.replace(ev, batch_unit="transitions").validate()
    # unset, the protocol counts in the unit the run trained with
    unset = dataclasses.replace(ev, batch_unit="")
    assert evaluate_learner(learner, unset, progress=False)["protocol"]["batch_unit"] == "steps"
    episodes = MAML(SMALL)
    assert evaluate_learner(episodes, unset, progress=False)["protocol"]["batch_unit"] == "episodes"


def test_evaluation_defaults_to_the_runs_inner_lr_then_half():
    from fastadapt.config import EvalConfig
    from fastadapt.evaluation import evaluate_learner

    learner = MAML(dataclasses.replace(SMALL, inner_lr=(0.3,)))
    ev = EvalConfig(num_tasks=2, episodes_per_step=2, num_steps=3, baselines=())
    res = evaluate_learner(learner, ev, progress=False)
    assert res["inner_lr"]["maml"] == [0.3, 0.15, 0.15]
    res = evaluate_learner(learner, dataclasses.replace(ev, inner_lr=(0.2,)), progress=False)
    assert res["inner_lr"]["maml"] == [0.2, 0.2, 0.2]


def test_tuned_later_lr_keeps_the_first_step_and_picks_the_best_on_training_tasks():
    from fastadapt.config import EvalConfig
    from fastadapt.evaluation import TUNING_STREAM, adaptation_returns, evaluate_learner
    from fastadapt.tasks import sample_tasks
    from fastadapt.tasks.core import derive_seed

    learner = MAML(SMALL)
    learner.step()
    ev = EvalConfig(
        num_tasks=3,
        episodes_per_step=3,
        num_steps=2,
        baselines=(),
        tune_later_lr=True,
        later_lr_scales=(1.0, 0.1, 3.0),
    )
    res = evaluate_learner(learner, ev, progress=False)
    chosen = res["inner_lr"]["maml (tuned later lr)"]
    assert len(chosen) == 2 and chosen[0] == 0.1
    candidates = [0.05 * s for s in ev.later_lr_scales]
    assert chosen[1] in candidates
    # reference: the return after the last step on the tuning tasks, for each candidate
    tasks = sample_tasks(learner.family, 10, SMALL.seed, split="train", index=TUNING_STREAM)
    params = {k: v.detach() for k, v in learner.meta_params.items()}

    def tuning_return(lr):
        r = adaptation_returns(
            learner.family,
            learner.policy,
            params,
            tasks,
            2,
            [0.1, lr],
            3,
            derive_seed(ev.seed, 3),
            SMALL.gamma,
            SMALL.gae_lambda,
        )
        return r[-1].mean()

    assert tuning_return(chosen[1]) == max(tuning_return(lr) for lr in candidates)
    # the test rows: the protocol's schedule, and the tuned one on the same test tasks
    assert res["inner_lr"]["maml"] == [0.1, 0.05]
    assert res["returns"]["maml (tuned later lr)"]["mean"][:2] == res["returns"]["maml"]["mean"][:2]
    with pytest.raises(ConfigError, match="num_steps >= 2"):
        dataclasses.replace(ev, num_steps=1).validate()
    with pytest.raises(ConfigError, match="later_lr_scales"):
        dataclasses.replace(ev, later_lr_scales=()).validate()
    metasgd = make_learner("metasgd", dataclasses.replace(SMALL, meta_iterations=1))
    with pytest.raises(ConfigError, match="meta-learned per-parameter rates"):
        evaluate_learner(metasgd, ev, progress=False)


def test_baseline_rates_are_tuned_step_by_step_for_the_return_right_after_each_step(monkeypatch):
    import inspect

    from fastadapt import evaluation
    from fastadapt.config import EvalConfig

    # A synthetic return on the tuning tasks: a large first step ruins the policy at once but
    # ends best after three steps, so tuning for the last step alone picks it.
    signature = inspect.signature(evaluation.adaptation_returns)

    def fake_returns(*args, **kwargs):
        bound = signature.bind(*args, **kwargs).arguments
        tasks, num_steps, lrs = bound["tasks"], bound["num_steps"], bound["lrs"]
        assert len(lrs) == num_steps
        per_step = [0.0]
        for k in range(num_steps):
            first = lrs[0]
            if k == 0:
                per_step.append(-100.0 if first > 0.05 else 10.0 - lrs[0])
            else:
                per_step.append(50.0 * (first > 0.05) + 20.0 - abs(lrs[k] - 0.015) * 100)
        return np.array(per_step)[:, None].repeat(len(tasks), axis=1)

    monkeypatch.setattr(evaluation, "adaptation_returns", fake_returns)
    learner = MAML(SMALL)
    ev = EvalConfig(num_tasks=2, episodes_per_step=2, num_steps=3)
    params = {k: v.detach() for k, v in learner.meta_params.items()}
    scales = (1.0, 0.3, 0.1, 0.03, 0.01)
    schedule = [0.1, 0.05, 0.05]
    tune = evaluation.tune_inner_lr
    # one scale, picked by the return after the last step: the ruinous first step
    assert tune(params, schedule, ev, learner, scales, learner.policy) == [0.1, 0.05, 0.05]
    # step by step: the first step's best (the smallest rate), then each later step's best
    tuned = tune(params, schedule, ev, learner, scales, learner.policy, per_step=True)
    assert tuned == pytest.approx([0.001, 0.015, 0.015])
    # the baselines' rows use the step-by-step tuning
    ev = dataclasses.replace(ev, baselines=("scratch",))
    res = evaluation.evaluate_learner(learner, ev, progress=False)
    assert res["inner_lr"]["scratch (tuned lr)"] == pytest.approx([0.001, 0.015, 0.015])


def test_cavia_meta_learns_the_network_adapts_the_context_and_baselines_fine_tune_everything():
    from fastadapt.config import EvalConfig
    from fastadapt.evaluation import evaluate_learner

    cfg = dataclasses.replace(SMALL, context_params=2, inner_lr=(1.0,))
    learner = MAML(cfg)
    assert learner.policy.adapted_keys == ("context",)
    before = params_of(learner)
    m = learner.step()
    assert m["outer/kl"] <= cfg.max_kl
    after = params_of(learner)
    assert not torch.equal(before["layers.0.weight"], after["layers.0.weight"])
    # Meta-SGD over a context learns a rate for the context only
    assert set(make_learner("metasgd", cfg).inner_lrs) == {"context"}
    ev = EvalConfig(num_tasks=2, episodes_per_step=2, num_steps=1, baselines=("scratch",))
    res = evaluate_learner(learner, ev, progress=False)
    assert set(res["returns"]) == {"maml", "scratch", "scratch (tuned lr)"}
    assert all(np.isfinite(r["mean"]).all() for r in res["returns"].values())


def test_hessian_subsample_sets_the_inner_hessians_sample_alone():
    seen = []
    _fvp("subsampled", 4, spy=recorder(seen), hessian_subsample=2)
    assert seen[-1].every == 2  # the inner Hessians' sample
    assert seen[-1].obs.shape[1] == 10 * 100 // 4  # the KL's: every 4th of 10 episodes x 100 steps
    _fvp("subsampled", 4, spy=recorder(seen))
    assert seen[-1].every == 4  # unset: the KL's
    with pytest.raises(ConfigError, match="hessian_subsample"):
        dataclasses.replace(SMALL, hessian_subsample=-1).validate()
