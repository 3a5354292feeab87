"""Bad input everywhere: each case gets a clear error naming the problem, and no finished run or
checkpoint is lost or overwritten."""

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

from fastadapt.cli import main
from fastadapt.config import MAMLConfig, ProMPConfig, ReptileConfig, RL2Config
from fastadapt.errors import ConfigError, NonFiniteError
from fastadapt.learners.maml import MAML
from fastadapt.runs import list_checkpoints, load_checkpoint
from fastadapt.tasks import GymTaskFamily
from fastadapt.train import make_learner, train

TINY = dict(meta_batch_size=2, episodes_per_task=2, meta_iterations=2)


@pytest.mark.parametrize("cls", [MAMLConfig, ReptileConfig, ProMPConfig, RL2Config])
@pytest.mark.parametrize(
    "field,value,match",
    [
        ("meta_batch_size", 0, "meta_batch_size must be positive"),
        ("episodes_per_task", -3, "episodes_per_task must be positive"),
        ("meta_iterations", 0, "meta_iterations must be positive"),
        ("hidden", (64, -1), "hidden sizes must be positive"),
        ("env", "Atlantis-v9", "unknown task family 'Atlantis-v9'; known: Bandit-v0"),
        ("env_kwargs", '{"horizon": 0}', "horizon must be positive"),
        ("device", "tpu", "device must be cpu or cuda"),
        ("gamma", -0.1, "gamma must be in"),
        ("init", "he", "unknown init 'he'; known: small-output, xavier"),
    ],
)
def test_impossible_config_values(cls, field, value, match):
    with pytest.raises(ConfigError, match=match):
        algo = {
            MAMLConfig: "maml",
            ReptileConfig: "reptile",
            ProMPConfig: "promp",
            RL2Config: "rl2",
        }[cls]
        kw = {"minibatches": 1} if cls is RL2Config else {}
        make_learner(algo, cls(**{**TINY, **kw, field: value}))


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("inner_lr", (0.0,), "inner_lr must be positive"),
        ("outer_lr", -1e-3, "outer_lr"),
        ("max_kl", -0.01, "max_kl"),
        ("num_inner_steps", -1, "num_inner_steps"),
    ],
)
def test_impossible_learning_rates_and_steps(field, value, match):
    with pytest.raises(ConfigError, match=match):
        MAML(MAMLConfig(**TINY, **{field: value}))


def test_unknown_algorithm_and_family_on_the_cli(tmp_path, capsys):
    assert main(["train", "pponly"]) == 2
    assert (
        "unknown algorithm 'pponly'; known: maml, metasgd, promp, reptile, rl2"
        in capsys.readouterr().err
    )
    assert main(["train", "reptile", "--env", "Nowhere-v0", "--run-dir", str(tmp_path / "r")]) == 2
    assert "unknown task family 'Nowhere-v0'" in capsys.readouterr().err


def test_continuous_policy_on_discrete_family_is_refused(tmp_path):
    # a Pendulum (Gaussian) checkpoint cannot be loaded as a CartPole (categorical) run
    cfg = MAMLConfig(**TINY, env="PendulumDynamics-v0")
    train(make_learner("maml", cfg), tmp_path / "pend", progress=False)
    tensors, meta = load_checkpoint(tmp_path / "pend" / "model.json")
    meta["env"] = "CartPoleDynamics-v0"
    import json

    from fastadapt.runs import check_compatible
    from fastadapt.train import run_identity

    learner = make_learner("maml", dataclasses.replace(cfg, env="CartPoleDynamics-v0"))
    with pytest.raises(Exception, match="policy"):
        check_compatible(meta, json.loads(json.dumps(run_identity(learner))), "ckpt")


class NaNRewardsAfter(gym.Wrapper):
    """Returns NaN rewards once the process has stepped this many times in total."""

    budget = {"steps": 0, "limit": 10**9}

    def step(self, action):
        obs, r, te, tr, info = self.env.step(action)
        NaNRewardsAfter.budget["steps"] += 1
        if NaNRewardsAfter.budget["steps"] > NaNRewardsAfter.budget["limit"]:
            r = float("nan")
        return obs, r, te, tr, info


def test_nan_rewards_from_a_user_env_name_task_and_step_and_keep_checkpoints(tmp_path):
    family = GymTaskFamily(
        "UserPendulum-v0",
        lambda task: NaNRewardsAfter(gym.make("Pendulum-v1", g=task["g"])),
        lambda n, rng: [{"g": float(g)} for g in rng.uniform(8, 12, n)],
        default_task={"g": 10.0},
        horizon=20,
    )
    cfg = MAMLConfig(
        env="UserPendulum-v0",
        meta_batch_size=2,
        episodes_per_task=2,
        meta_iterations=10,
        checkpoint_every=1,
        hidden=(16,),
    )
    # each iteration steps 2 tasks x 2 episodes x 20 steps x 2 batches = 160 times
    NaNRewardsAfter.budget.update(steps=0, limit=160 * 3 + 50)
    learner = MAML(cfg, family=family)
    with pytest.raises(
        NonFiniteError,
        match=r"non-finite rewards from task \d .* at step \d+.*"
        r"last good checkpoint is kept: .*iter_000003",
    ):
        train(learner, tmp_path / "run", progress=False)
    kept = list_checkpoints(tmp_path / "run")
    assert kept and kept[-1].name == "iter_000003.json"
    tensors, meta = load_checkpoint(kept[-1])
    assert meta["iteration"] == 3 and all(torch.isfinite(v).all() for v in tensors.values())


def test_nan_observations_are_caught_too():
    from fastadapt.policies import policy_for_family
    from fastadapt.sampling import collect_episodes

    class NaNObs(gym.Wrapper):
        def step(self, action):
            obs, r, te, tr, info = self.env.step(action)
            return np.full_like(obs, np.inf), r, te, tr, info

    family = GymTaskFamily(
        "Inf-v0",
        lambda t: NaNObs(gym.make("CartPole-v1")),
        lambda n, rng: [None] * n,
        default_task=None,
    )
    pol = policy_for_family(family.id, family.observation_space, family.action_space)
    with pytest.raises(NonFiniteError, match="non-finite observations from task 0 .* at step 1"):
        collect_episodes(family, pol, pol.init_params(), [None], 1, seed=0)


def test_task_record_with_missing_or_extra_fields_on_the_cli(tmp_path, capsys):
    run = tmp_path / "nav"
    assert (
        main(
            [
                "train",
                "maml",
                "--run-dir",
                str(run),
                "--meta-iterations",
                "1",
                "--meta-batch-size",
                "2",
                "--episodes-per-task",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    assert main(["adapt", str(run), "--task", '{"goal_x": 0.1, "goal_y": 0.2, "goal_z": 1}']) == 2
    assert "unknown field(s) ['goal_z']" in capsys.readouterr().err
    assert main(["adapt", str(run), "--task", "{oops"]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    # the finished run is intact and refused as a target of a new run without --overwrite
    before = (run / "model.safetensors").read_bytes()
    assert main(["train", "reptile", "--run-dir", str(run), "--meta-iterations", "1"]) == 2
    assert "already holds a finished run" in capsys.readouterr().err
    assert (run / "model.safetensors").read_bytes() == before
