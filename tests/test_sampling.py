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
