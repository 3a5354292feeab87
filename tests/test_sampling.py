import gymnasium as gym
import numpy as np
import pytest
import torch

from fastadapt.errors import ConfigError, NonFiniteError
from fastadapt.policies import expand_params, policy_for_family
from fastadapt.sampling import collect_episodes
from fastadapt.tasks import GymTaskFamily, make_family, sample_tasks


def setup(fid="Navigation2D-v0", n=3):
    family = make_family(fid)
    pol = policy_for_family(fid, family.observation_space, family.action_space)
    params = pol.init_params(torch.Generator().manual_seed(0))
    return family, pol, params, sample_tasks(family, n, seed=0)


def test_shapes_mask_and_returns():
    family, pol, params, tasks = setup()
    ep = collect_episodes(family, pol, params, tasks, 4, seed=0)
    assert ep.obs.shape == (3, 100, 4, 2) and ep.actions.shape == (3, 100, 4, 2)
    assert ep.mask.shape == ep.rewards.shape == ep.log_probs.shape == (3, 100, 4)
    torch.testing.assert_close(ep.mask.sum(1), ep.lengths.float())
    assert (ep.obs[:, 0] == 0).all()  # every episode starts at the origin
    assert ep.num_steps == int(ep.mask.sum())
    # rewards are what the environment gives for the recorded (clipped) actions
    pos = ep.obs[:, 1] if ep.obs.shape[1] > 1 else None
    goal = torch.tensor([[t.goal_x, t.goal_y] for t in tasks]).view(3, 1, 2)
    torch.testing.assert_close(ep.rewards[:, 0], -(pos - goal).norm(dim=-1))


def test_same_seed_same_batch_and_other_seed_differs():
    family, pol, params, tasks = setup("CartPoleDynamics-v0")
    a = collect_episodes(family, pol, params, tasks, 3, seed=5)
    b = collect_episodes(family, pol, params, tasks, 3, seed=5)
    c = collect_episodes(family, pol, params, tasks, 3, seed=6)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y)
    assert not torch.equal(a.actions[:, :5], c.actions[:, :5])


def test_per_task_params_act_per_task():
    family, pol, params, tasks = setup(n=2)
    per_task = {k: v.clone() for k, v in expand_params(params, 2).items()}
    per_task["layers.2.bias"][1] = torch.tensor([5.0, 5.0])  # task 1 always moves up-right
    ep = collect_episodes(family, pol, per_task, tasks, 8, seed=0)
    assert (ep.actions[1, 0] > 2).all() and not (ep.actions[0, 0] > 2).all()


def test_terminated_episodes_are_masked_and_not_bootstrapped():
    family = make_family("CartPoleDynamics-v0")
    pol = policy_for_family(family.id, family.observation_space, family.action_space)
    params = pol.init_params(torch.Generator().manual_seed(0))
    ep = collect_episodes(family, pol, params, sample_tasks(family, 4, 1), 5, seed=0)
    assert ep.lengths.min() < ep.mask.shape[1]  # some episodes ended early
    assert (ep.terminated.sum(1) == (ep.lengths < family.horizon).float()).all()
    assert (ep.rewards * (1 - ep.mask)).abs().sum() == 0


def test_wrong_policy_kind_is_refused():
    family, _, _, tasks = setup()
    cp = make_family("CartPoleDynamics-v0")
    pol = policy_for_family(cp.id, cp.observation_space, cp.action_space)
    with pytest.raises(ConfigError, match="categorical policy cannot act"):
        collect_episodes(family, pol, pol.init_params(), tasks, 1, seed=0)


class NaNAfter(gym.Wrapper):
    def step(self, action):
        obs, r, te, tr, info = self.env.step(action)
        return obs, float("nan") if self.env.unwrapped.g > 12 else r, te, tr, info


def test_non_finite_rewards_name_task_and_step():
    family = GymTaskFamily(
        "NaNPendulum-v0",
        lambda task: NaNAfter(gym.make("Pendulum-v1", g=task["g"])),
        lambda n, rng: [{"g": 10.0}, {"g": 13.0}][:n],
        default_task={"g": 10.0},
    )
    pol = policy_for_family(family.id, family.observation_space, family.action_space)
    with pytest.raises(NonFiniteError, match="rewards from task 1 .* at step 0"):
        collect_episodes(family, pol, pol.init_params(), sample_tasks(family, 2, 0), 2, seed=0)


def test_gym_adapter_sampling_matches_shapes():
    family = GymTaskFamily(
        "UserCartPole-v0",
        lambda task: gym.make("CartPole-v1"),
        lambda n, rng: [{}] * n,
        default_task={},
    )
    pol = policy_for_family(family.id, family.observation_space, family.action_space)
    ep = collect_episodes(family, pol, pol.init_params(), [{}, {}], 3, seed=0)
    assert ep.obs.shape[0] == 2 and ep.obs.shape[2] == 3
    assert np.all(ep.terminated.sum(1).numpy() == 1)


def zero_policy(family):
    """A policy whose mean action is 0 (the robot stands still); acting deterministically."""
    pol = policy_for_family(family.id, family.observation_space, family.action_space)
    params = pol.init_params(torch.Generator().manual_seed(0))
    params = {k: torch.zeros_like(v) if k.startswith("layers.2") else v for k, v in params.items()}
    return pol, params


def test_step_budget_gives_short_episodes_more_episodes():
    from fastadapt.sampling import collect_step_budget
    from fastadapt.tasks.navigation import Navigation2D, NavigationTask

    family = Navigation2D(horizon=10)
    pol, params = zero_policy(family)
    # standing still at the origin: goal (0, 0) ends every episode after 1 step; (0.4, 0.4) never
    tasks = [NavigationTask(0.0, 0.0), NavigationTask(0.4, 0.4)]
    ep = collect_step_budget(family, pol, params, tasks, 3, seed=0, deterministic=True)
    assert ep.num_episodes.tolist() == [30, 3]  # 3 x 10 steps each
    assert ep.lengths[0].tolist() == [1] * 30
    assert ep.lengths[1].tolist() == [10] * 3 + [0] * 27  # padded with empty episodes
    torch.testing.assert_close(ep.mask.sum((1, 2)), torch.tensor([30.0, 30.0]))
    assert ep.mask[1, :, 3:].sum() == 0 and ep.rewards[1, :, 3:].abs().sum() == 0
    assert ep.terminated[0].sum() == 30 and ep.terminated[1].sum() == 0
    # the mean return ignores padding: task 1 loses 10 x 0.566 per episode
    torch.testing.assert_close(ep.mean_return, torch.tensor([0.0, -10 * 0.4 * 2**0.5]))


def test_step_budget_is_minimal_whole_episodes_and_per_task():
    from fastadapt.sampling import collect, collect_step_budget

    family, pol, params, _ = setup()
    tasks = [
        family.task_type(0.05, 0.05),
        family.task_type(0.45, -0.45),
        family.task_type(0.0, 0.1),
    ]
    per_task = {k: v.clone() for k, v in expand_params(params, 3).items()}
    # task 2 moves straight up 0.05 a step (almost no noise): its goal ends every episode at step 2
    per_task["layers.2.weight"][2] = 0.0
    per_task["layers.2.bias"][2] = torch.tensor([0.0, 0.5])
    per_task["log_std"][2] = -8.0
    E = 4
    ep = collect_step_budget(family, pol, per_task, tasks, E, seed=3)
    budget = E * family.horizon
    for i in range(3):
        lens = ep.lengths[i][ep.lengths[i] > 0]
        assert (ep.lengths[i][len(lens) :] == 0).all()  # real episodes first, then padding
        assert lens.sum() >= budget and lens[:-1].sum() < budget  # whole episodes, no more
    assert ep.num_episodes[2] == budget // 2 and (ep.lengths[2] == 2).all()
    assert (ep.num_episodes[:2] >= E).all()
    # the first round is the episode-unit batch with the same seed
    plain = collect(family, pol, per_task, tasks, E, seed=3, unit="episodes")
    T = plain.mask.shape[1]
    torch.testing.assert_close(ep.obs[:, :T, :E], plain.obs)
    # advantages on a padded batch are finite and zero on the padding
    from fastadapt.adaptation import make_adapt_batch

    batch = make_adapt_batch(ep, 0.99, 1.0)
    assert torch.isfinite(batch.advantages).all()
    assert (batch.advantages * (1 - ep.mask)).abs().sum() == 0
    with pytest.raises(ConfigError, match="batch unit"):
        collect(family, pol, params, tasks, E, seed=3, unit="transitions")


def test_step_budget_equals_episode_batch_when_no_episode_ends_early():
    from fastadapt.sampling import collect

    family = make_family("Navigation2D-v0")
    pol, params = zero_policy(family)
    tasks = [family.task_type(0.3, 0.3), family.task_type(-0.2, 0.4)]
    a = collect(family, pol, params, tasks, 3, seed=1, unit="steps")
    b = collect(family, pol, params, tasks, 3, seed=1, unit="episodes")
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y)


def test_step_budget_names_the_batch_task_of_a_non_finite_later_round(monkeypatch):
    import fastadapt.sampling as sampling
    from fastadapt.tasks.navigation import Navigation2D, NavigationTask

    family = Navigation2D(horizon=10)
    pol, params = zero_policy(family)
    tasks = [NavigationTask(0.4, 0.4), NavigationTask(0.0, 0.0)]  # only task 1 needs round 2
    real, calls = sampling.collect_episodes, []

    def flaky(*args, **kwargs):
        calls.append(len(args[3]))
        if len(calls) == 2:  # round 2 collects task 1 alone, as its task 0: a NaN there
            E, task_ids = args[4], args[8]
            sampling.check_finite_array(np.full(E, np.nan), "rewards", 0, E, "Nav", None, task_ids)
        return real(*args, **kwargs)

    monkeypatch.setattr(sampling, "collect_episodes", flaky)
    with pytest.raises(NonFiniteError, match="from task 1 "):
        sampling.collect_step_budget(family, pol, params, tasks, 3, seed=0, deterministic=True)
    assert calls == [2, 1]
