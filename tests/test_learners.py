import dataclasses

import numpy as np
import pytest
import torch

from fastadapt.adaptation import AdaptBatch, adapt_step, inner_loss, make_adapt_batch
from fastadapt.config import ProMPConfig, ReptileConfig, RL2Config
from fastadapt.errors import ConfigError
from fastadapt.learners.promp import ProMP
from fastadapt.learners.reptile import Reptile
from fastadapt.learners.rl2 import RL2, collect_trials, evaluate_rl2
from fastadapt.policies import MLPPolicy
from fastadapt.sampling import collect_episodes
from fastadapt.sequence_policies import SequencePolicy, rl2_input_dim
from fastadapt.task_sampling import PrioritizedTaskSampler
from fastadapt.tasks import make_family, sample_tasks
from fastadapt.tasks.core import derive_seed

SMALL = dict(meta_batch_size=4, episodes_per_task=4, meta_iterations=2, seed=0)


def bandit_rl2(**overrides) -> RL2Config:
    """A tiny RL² config on bandits: a 16-unit GRU, 2 minibatches."""
    return RL2Config(**{"env": "Bandit-v0", "hidden_size": 16, "minibatches": 2, **overrides})


def test_reptile_one_step_with_unit_outer_lr_is_a_policy_gradient_step():
    cfg = ReptileConfig(**SMALL, num_inner_steps=1, outer_lr=1.0)
    learner = Reptile(cfg)
    theta = {k: v.detach().clone() for k, v in learner.meta_params.items()}
    # the same episodes the learner will collect (same seeds)
    _, tasks = learner.task_sampler.sample(cfg.meta_batch_size, 0)
    ep = collect_episodes(
        learner.family,
        learner.policy,
        theta,
        tasks,
        cfg.episodes_per_task,
        derive_seed(cfg.seed, 1, 0, 0),
    )
    batch = make_adapt_batch(ep, cfg.gamma, cfg.gae_lambda)
    theta_req = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
    loss = inner_loss(learner.policy, theta_req, batch).mean()  # mean over tasks
    grads = torch.autograd.grad(loss, list(theta_req.values()))
    learner.step()
    for (k, v), g in zip(theta.items(), grads, strict=True):
        torch.testing.assert_close(
            learner.meta_params[k].detach(), v - 0.1 * g, rtol=1e-4, atol=1e-6
        )


def test_reptile_ppo_inner_and_adam_outer_run():
    learner = Reptile(ReptileConfig(**SMALL, inner_algo="ppo", outer="adam", outer_lr=1e-2))
    m = learner.step()
    assert np.isfinite(list(m.values())).all()
    learner = Reptile(ReptileConfig(**SMALL, batch_unit="steps"))
    assert np.isfinite(list(learner.step().values())).all()


def test_lvc_first_derivative_equals_reinforce_gradient_but_not_second():
    torch.manual_seed(0)
    pol = MLPPolicy(2, 2, False, hidden=(6,), activation="tanh")
    params = {k: v.double().requires_grad_(True) for k, v in pol.init_params().items()}
    params["layers.1.weight"].data.normal_(0, 0.5)
    batch = AdaptBatch(
        torch.randn(2, 4, 3, 2, dtype=torch.float64),
        torch.randn(2, 4, 3, 2, dtype=torch.float64),
        torch.randn(2, 4, 3, dtype=torch.float64),
        torch.ones(2, 4, 3, dtype=torch.float64),
    )
    g_vpg = torch.autograd.grad(
        inner_loss(pol, params, batch, "vpg").sum(), list(params.values()), create_graph=True
    )
    g_lvc = torch.autograd.grad(
        inner_loss(pol, params, batch, "lvc").sum(), list(params.values()), create_graph=True
    )
    for a, b in zip(g_vpg, g_lvc, strict=True):
        torch.testing.assert_close(a, b)
    # the second derivatives differ (LVC adds the score outer-product term)
    h_vpg = torch.autograd.grad(g_vpg[0].sum(), params["layers.0.weight"])[0]
    h_lvc = torch.autograd.grad(g_lvc[0].sum(), params["layers.0.weight"])[0]
    assert not torch.allclose(h_vpg, h_lvc)
    # one LVC adaptation step equals one VPG step in value
    a1, _ = adapt_step(pol, params, batch, 0.1, objective="vpg")
    a2, _ = adapt_step(pol, params, batch, 0.1, objective="lvc")
    for k in a1:
        torch.testing.assert_close(a1[k], a2[k])


@pytest.mark.parametrize(
    "unit,context",
    [("episodes", 0), ("steps", 0), ("episodes", 2)],
    ids=["episodes", "steps", "cavia"],
)
def test_promp_step_runs_and_adapts_kl_coefficient(unit, context):
    learner = ProMP(ProMPConfig(**SMALL, promp_steps=2, batch_unit=unit, context_params=context))
    before = {k: v.detach().clone() for k, v in learner.meta_params.items()}
    m = learner.step()
    assert m["outer/kl"] >= 0 and m["outer/kl_coef"] != ProMPConfig().kl_coef
    assert any(not torch.equal(before[k], v) for k, v in learner.meta_params.items())


# ---- RL² -----------------------------------------------------------------------------------------


def test_rl2_hidden_state_carries_across_episodes_and_resets_between_trials():
    family = make_family("Bandit-v0", k=3)
    torch.manual_seed(0)
    pol = SequencePolicy(1, 3, True, "gru", hidden=16)
    tasks = sample_tasks(family, 2, seed=0)
    t1 = collect_trials(family, pol, tasks, 5, seed=1)
    # inputs carry the previous action and reward across episode boundaries
    assert t1.inputs.shape == (2, 5, rl2_input_dim(1, 3))
    assert torch.equal(
        t1.inputs[:, 1:, 1:4], torch.nn.functional.one_hot(t1.actions[:, :-1], 3).float()
    )
    torch.testing.assert_close(t1.inputs[:, 1:, 4], t1.rewards[:, :-1])
    assert (t1.inputs[:, 1:, 5] == 1).all() and (t1.inputs[:, 0, 1:] == 0).all()
    # the recorded values equal a fresh recomputation over the whole trial: the state carried over
    _, v, _ = pol(t1.inputs)
    torch.testing.assert_close(v, t1.values)
    # and a later trial starts from a fresh state: its first value only depends on its first input
    _, v_first, _ = pol(t1.inputs[:, :1])
    torch.testing.assert_close(v_first[:, 0], t1.values[:, 0])
    # with the state carried, the value after 3 steps differs from one computed from scratch
    _, v_fresh, _ = pol(t1.inputs[:, 3:4])
    assert not torch.allclose(v_fresh[:, 0], t1.values[:, 3])


def test_rl2_prev_obs_inputs_hold_the_previous_transition():
    family = make_family("CartPoleDynamics-v0")  # episodes of different lengths
    pol = SequencePolicy(
        4,
        2,
        True,
        "transformer",
        hidden=8,
        heads=2,
        max_len=1500,
        time_inputs=True,
        prev_obs_inputs=True,
    )
    assert pol.input_dim == rl2_input_dim(4, 2, time_inputs=True) + 4
    assert pol.input_dim == rl2_input_dim(4, 2, True, True)
    trials = collect_trials(family, pol, sample_tasks(family, 3, 0), 3, seed=0)
    for b in range(3):
        L = int(trials.mask[b].sum())
        obs, prev_obs = trials.inputs[b, :L, :4], trials.inputs[b, :L, -4:]
        # the observation the previous action was taken in, across episode ends too; none at first
        torch.testing.assert_close(prev_obs[1:], obs[:-1])
        assert not prev_obs[0].any()
        assert trials.inputs[b, :L, 4 + 2 + 1].sum() == 2  # two episode ends inside the trial
    # the policy reads it: recomputing over the stored inputs gives the recorded values, and
    # changing only the previous observations changes them
    _, v, _ = pol(trials.inputs)
    torch.testing.assert_close(v * trials.mask, trials.values)
    other = trials.inputs.clone()
    other[:, :, -4:] += 1.0
    _, v_other, _ = pol(other)
    assert not torch.allclose(v_other, v)


def test_rl2_clock_inputs_count_steps_and_episodes():
    family = make_family("CartPoleDynamics-v0")  # episodes of different lengths
    pol = SequencePolicy(4, 2, True, "gru", hidden=8, time_inputs=True)
    assert pol.input_dim == rl2_input_dim(4, 2) + 2
    trials = collect_trials(family, pol, sample_tasks(family, 3, 0), 3, seed=0)
    H = family.horizon
    for b in range(3):
        L = int(trials.mask[b].sum())
        done = trials.inputs[b, :L, 4 + 2 + 1]  # the previous step ended an episode
        episode = torch.cumsum(done, 0)  # index of the episode each step belongs to
        starts = torch.cat([torch.ones(1), done[1:]]).bool()
        step = torch.zeros(L)
        for i in range(1, L):
            step[i] = 0 if starts[i] else step[i - 1] + 1
        torch.testing.assert_close(trials.inputs[b, :L, -2], step / H)
        torch.testing.assert_close(trials.inputs[b, :L, -1], episode / 3)
    # the policy reads the clock: recomputing over the stored inputs gives the recorded values
    _, v, _ = pol(trials.inputs)
    torch.testing.assert_close(v * trials.mask, trials.values)


@pytest.mark.parametrize("kind", ["gru", "lstm", "transformer"])
def test_sequence_policies_train_on_tabular_mdp(kind):
    cfg = RL2Config(
        env="TabularMDP-v0",
        meta_batch_size=8,
        episodes_per_task=2,
        policy=kind,
        hidden_size=32,
        minibatches=2,
        meta_iterations=1,
    )
    learner = RL2(cfg)
    m = learner.step()
    assert np.isfinite(list(m.values())).all() and m["env_steps"] == 8 * 2 * 10


def test_transformer_is_causal():
    torch.manual_seed(0)
    pol = SequencePolicy(3, 2, False, "transformer", hidden=16, heads=2, max_len=20)
    x = torch.randn(2, 10, rl2_input_dim(3, 2))
    d1, v1, _ = pol(x)
    x2 = x.clone()
    x2[:, 6:] = torch.randn_like(x2[:, 6:])
    d2, v2, _ = pol(x2)
    torch.testing.assert_close(d1.loc[:, :6], d2.loc[:, :6])
    torch.testing.assert_close(v1[:, :6], v2[:, :6])
    assert not torch.allclose(v1[:, 6:], v2[:, 6:])


@pytest.mark.parametrize(
    "kind, separate",
    [("gru", False), ("lstm", False), ("transformer", False), ("gru", True), ("transformer", True)],
)
def test_rl2_step_by_step_equals_the_whole_trial(kind, separate):
    # episodes of different lengths: trials wait for each other, the Transformer's cache has gaps
    family = make_family("CartPoleDynamics-v0")
    torch.manual_seed(0)
    pol = SequencePolicy(
        4, 2, True, kind, hidden=16, layers=2, heads=2, max_len=3 * 500, separate_critic=separate
    )
    trials = collect_trials(family, pol, sample_tasks(family, 4, 0), 3, seed=0)
    assert len(set(trials.mask.sum(1).tolist())) > 1
    dist, v, _ = pol(trials.inputs)
    m = trials.mask
    torch.testing.assert_close(v * m, trials.values, atol=1e-5, rtol=1e-5)
    logp = pol.dist_ops.log_prob(dist, trials.actions) * m
    torch.testing.assert_close(logp, trials.log_probs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["gru", "lstm", "transformer"])
def test_separate_critic_has_its_own_sequence_model(kind):
    torch.manual_seed(0)
    pol = SequencePolicy(3, 2, True, kind, hidden=8, heads=2, max_len=12, separate_critic=True)
    shared = SequencePolicy(3, 2, True, kind, hidden=8, heads=2, max_len=12)
    core = sum(
        p.numel() for n, p in shared.named_parameters() if n.startswith(("core", "embed", "pos"))
    )
    assert pol.num_parameters() == shared.num_parameters() + core
    dist, values, _ = pol(torch.randn(4, 12, pol.input_dim))
    params = dict(pol.named_parameters())
    actor_side = [n for n in params if n.startswith(("core", "embed", "pos", "actor"))]
    critic_side = [n for n in params if n.startswith(("critic_", "critic."))]
    # the value reads only the critic's model and head; the actions only the actor's
    grads = torch.autograd.grad(values.sum(), [params[n] for n in actor_side], allow_unused=True)
    assert all(g is None or not g.any() for g in grads)
    grads = torch.autograd.grad(dist.loc.sum(), [params[n] for n in critic_side], allow_unused=True)
    assert all(g is None or not g.any() for g in grads)
    grads = torch.autograd.grad(values.sum(), [params[n] for n in critic_side], allow_unused=True)
    assert all(g is not None and g.any() for g in grads)


def test_rl2_variable_length_episodes_are_left_aligned():
    family = make_family("CartPoleDynamics-v0")
    pol = SequencePolicy(4, 2, True, "gru", hidden=8)
    trials = collect_trials(family, pol, sample_tasks(family, 3, 0), 3, seed=0)
    lengths = trials.mask.sum(1)
    for b in range(3):
        L = int(lengths[b])
        assert trials.mask[b, :L].all() and not trials.mask[b, L:].any()
    torch.testing.assert_close(trials.episode_returns.sum(1), (trials.rewards * trials.mask).sum(1))


def test_rl2_evaluation_reports_returns_per_episode():
    learner = RL2(bandit_rl2(meta_batch_size=8, episodes_per_task=5))
    result = evaluate_rl2(learner, num_tasks=6)
    assert len(result["returns"]["rl2"]["mean"]) == 5
    assert 0 <= result["total_reward"]["mean"] <= 5


def test_rl2_bad_config():
    with pytest.raises(ConfigError, match="unknown recurrent policy"):
        SequencePolicy(1, 2, True, "mamba")
    with pytest.raises(ConfigError, match="minibatches"):
        RL2(RL2Config(meta_batch_size=2, minibatches=4))
    with pytest.raises(ConfigError, match="batch_unit"):
        RL2(RL2Config(meta_batch_size=2, batch_unit="steps"))
    with pytest.raises(ConfigError, match="init is for MLP-policy learners"):
        RL2(RL2Config(meta_batch_size=2, init="xavier"))


@pytest.mark.parametrize("cls", [ReptileConfig, RL2Config])
def test_learners_that_cannot_adapt_a_context_alone_refuse_one(cls):
    with pytest.raises(ConfigError, match="context_params is for maml, metasgd and promp"):
        cls(context_params=2).validate()


# ---- prioritized task sampling -------------------------------------------------------------------


def test_prioritized_sampler_frequencies_follow_weights():
    family = make_family("CartPoleDynamics-v0")
    sampler = PrioritizedTaskSampler(family, seed=0, pool_size=5, temperature=0.5, floor=0.1)
    sampler.update(np.arange(5), torch.zeros(5), torch.tensor([100.0, 50, 20, 10, 5]))
    p = sampler.probabilities()
    assert p.argmax() == 4 and p.min() >= 0.1 / 5 and abs(p.sum() - 1) < 1e-12
    counts = np.zeros(5)
    for it in range(4000):
        idx, _ = sampler.sample(5, it)
        np.add.at(counts, idx, 1)
    np.testing.assert_allclose(counts / counts.sum(), p, atol=0.01)


def test_prioritized_sampler_in_a_learner_and_resume_state():
    from fastadapt.config import MAMLConfig
    from fastadapt.learners.maml import MAML

    cfg = MAMLConfig(**SMALL, task_sampler="prioritized", task_pool_size=6)
    learner = MAML(cfg)
    learner.step()
    assert learner.task_sampler.seen.any()
    state = learner.state_tensors()
    other = MAML(cfg)
    other.load_state(state, learner.state_meta())
    np.testing.assert_array_equal(other.task_sampler.scores, learner.task_sampler.scores)
    with pytest.raises(ConfigError, match="priority_floor"):
        MAML(dataclasses.replace(cfg, priority_floor=0.0))


def test_rl2_value_loss_keeps_one_scale_with_normalized_values():
    from fastadapt.tasks.bandit import Bandit

    class LoudBandit(Bandit):  # the same bandits, rewards x 100
        def transition(self, params, state, action, rng):
            state, reward, done = super().transition(params, state, action, rng)
            return state, 100.0 * reward, done

    def value_losses(normalize: bool) -> list[float]:
        cfg = bandit_rl2(meta_batch_size=16, episodes_per_task=20, normalize_values=normalize)
        learner = RL2(cfg, family=LoudBandit(k=3))
        out = [learner.step()["outer/value_loss"] for _ in range(3)]
        if normalize:  # the critic's units are the last batch's returns
            assert 100 < learner.value_mean < 2000 and learner.value_std > 10
        else:
            assert (learner.value_mean, learner.value_std) == (0.0, 1.0)
        return out

    # standardized targets: the loss is O(1); raw targets of returns in the hundreds: O(10^4)
    assert max(value_losses(True)[1:]) < 5
    assert min(value_losses(False)) > 1e3


def test_rl2_linear_lr_schedule_decays_to_zero_over_the_run():
    def lrs(schedule: str) -> list[float]:
        cfg = bandit_rl2(
            meta_batch_size=4, episodes_per_task=3, lr=1e-2, meta_iterations=4, lr_schedule=schedule
        )
        learner = RL2(cfg)
        out = []
        for _ in range(4):
            out.append(learner.step()["outer/lr"])
            assert learner.optimizer.param_groups[0]["lr"] == out[-1]
        return out

    assert lrs("constant") == [1e-2] * 4
    assert lrs("linear") == pytest.approx([1e-2, 7.5e-3, 5e-3, 2.5e-3])
