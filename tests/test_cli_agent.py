import json

import gymnasium as gym
import numpy as np
import pytest

from fastadapt.agent import Agent, TrialAgent
from fastadapt.cli import main
from fastadapt.errors import SpaceError

TINY = [
    "--meta-iterations",
    "2",
    "--meta-batch-size",
    "3",
    "--episodes-per-task",
    "3",
    "--no-progress",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "nav"
    assert main(["train", "maml", "--run-dir", str(run), *TINY]) == 0
    return run


def test_evaluate_a_checkpoint_file(tmp_path, capsys):
    run = tmp_path / "nav"
    assert main(["train", "maml", "--run-dir", str(run), *TINY, "--checkpoint-every", "1"]) == 0
    ckpt = run / "checkpoints" / "iter_000001.safetensors"
    argv = ["--num-tasks", "2", "--episodes-per-step", "2", "--num-steps", "1"]
    argv += ["--pretrain-iterations", "1", "--no-tune-baseline-lr", "--no-progress"]
    assert main(["evaluate", str(ckpt), *argv]) == 0
    assert "| maml |" in capsys.readouterr().out
    out = run / "checkpoints" / "iter_000001_eval"
    assert (out / "eval.json").exists() and (out / "adaptation.png").exists()
    assert not (run / "eval.json").exists()  # the run's own results are the final model's
    # the pretrain baseline belongs to the run: trained once into it, shared by its checkpoints
    assert (run / "baselines" / "pretrain").is_dir() and not (out / "baselines").exists()
    # the final model's file: its results beside it, the baseline (already trained) the run's
    assert main(["evaluate", str(run / "model.safetensors"), *argv]) == 0
    assert (run / "model_eval" / "eval.json").exists() and not (
        run / "model_eval" / "baselines"
    ).exists()
    # the checkpoint's files do not pass for a checkpoint of the run
    from fastadapt.runs import list_checkpoints

    assert [p.name for p in list_checkpoints(run)] == ["iter_000001.json", "iter_000002.json"]


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "Navigation2D-v0" in out and "metasgd" in out


def test_train_writes_run_directory(trained):
    for name in ("config.yaml", "metrics.csv", "model.json", "model.safetensors"):
        assert (trained / name).exists()
    assert list((trained / "tb").iterdir())


def test_evaluate_adapt_report(trained, capsys):
    assert (
        main(
            [
                "evaluate",
                str(trained),
                "--num-tasks",
                "3",
                "--episodes-per-step",
                "3",
                "--num-steps",
                "2",
                "--pretrain-iterations",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "| maml |" in out and "| scratch |" in out and "| pretrain |" in out
    assert main(["evaluate", str(trained), "--greedy", "--no-progress"]) != 0
    assert "--greedy applies to RL² runs; maml adapts by gradient steps" in capsys.readouterr().err
    result = json.loads((trained / "eval.json").read_text())
    assert set(result["returns"]) == {
        "maml",
        "scratch",
        "pretrain",
        "scratch (tuned lr)",
        "pretrain (tuned lr)",
    }
    assert result["inner_lr"]["pretrain (tuned lr)"][0] in [
        0.1 * s for s in (1.0, 0.3, 0.1, 0.03, 0.01)
    ]
    assert len(result["returns"]["maml"]["mean"]) == 3
    assert len(result["test_tasks"]) == 3
    assert (trained / "adaptation.png").stat().st_size > 1000
    assert (
        main(
            [
                "adapt",
                str(trained),
                "--task",
                '{"goal_x": 0.2, "goal_y": 0.1}',
                "--steps",
                "1",
                "--episodes",
                "2",
            ]
        )
        == 0
    )
    assert "after 1 step" in capsys.readouterr().out
    args = ["adapt", str(trained), "--steps", "1", "--episodes", "2", "--batch-unit", "steps"]
    assert main(args) == 0
    assert "after 1 step" in capsys.readouterr().out
    assert main(["report", str(trained)]) == 0
    report = (trained / "report.md").read_text()
    assert "training.png" in report and "| maml |" in report


def test_cli_errors_are_clear(trained, capsys):
    assert main(["train", "nope"]) == 2
    assert "unknown algorithm 'nope'" in capsys.readouterr().err
    assert (
        main(["train", "maml", "--env", "Nope-v0", "--run-dir", str(trained.parent / "x"), *TINY])
        == 2
    )
    assert "unknown task family" in capsys.readouterr().err
    assert main(["train", "maml", "--run-dir", str(trained), *TINY]) == 2
    assert "already holds a finished run" in capsys.readouterr().err
    assert main(["adapt", str(trained), "--task", '{"goal_x": 0.2}']) == 2
    assert "missing field" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2
    # --resume takes the run's saved config: a learner option would be ignored, so it is refused
    resume = ["train", "maml", "--run-dir", str(trained), "--resume"]
    assert main([*resume, "--meta_iterations=9", "--no-normalize-advantages"]) == 2
    err = capsys.readouterr().err
    assert "saved config; drop --meta-iterations, --normalize-advantages" in err


def test_config_file_with_unknown_keys_is_refused(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("meta_iterations: 2\nlearning_rate: 3\n")
    assert main(["train", "maml", "--config-file", str(cfg), "--run-dir", str(tmp_path / "r")]) == 2
    assert "unknown MAMLConfig key(s) ['learning_rate']" in capsys.readouterr().err


def test_config_file_sets_defaults(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("meta_iterations: 1\nmeta_batch_size: 2\nepisodes_per_task: 2\n")
    assert (
        main(
            [
                "train",
                "maml",
                "--config-file",
                str(cfg),
                "--run-dir",
                str(tmp_path / "r"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert "meta_batch_size: 2" in (tmp_path / "r" / "config.yaml").read_text()


def test_agent_adapts_to_gym_env_and_acts(trained):
    agent = Agent.load(trained)
    env = gym.make("fastadapt/Navigation2D-v0", task={"goal_x": 0.3, "goal_y": -0.2})
    returns = agent.adapt(env, steps=2, episodes=4)
    assert len(returns) == 3
    obs, _ = env.reset(seed=0)
    a = agent.act(obs)
    assert env.action_space.contains(a)
    obs, r, *_ = env.step(a)
    assert agent.act(np.zeros((5, 2), np.float32)).shape == (5, 2)
    agent.reset()


def test_agent_adapts_in_the_unit_its_run_trained_with(trained, monkeypatch):
    import dataclasses

    import fastadapt.agent as A

    units = []

    def spy(*args, unit, **kwargs):
        units.append(unit)
        return sample_and_adapt(*args, unit=unit, **kwargs)

    sample_and_adapt = A.sample_and_adapt
    monkeypatch.setattr(A, "sample_and_adapt", spy)
    agent = Agent.load(trained)  # trained in episodes
    task = {"goal_x": 0.3, "goal_y": -0.2}
    agent.adapt(task, episodes=2)
    agent.learner.config = dataclasses.replace(agent.learner.config, batch_unit="steps")
    agent.adapt(task, episodes=2)
    agent.adapt(task, episodes=2, unit="episodes")
    assert units == ["episodes", "steps", "episodes"]


class MyNav(gym.Env):
    """A user's own environment with Navigation2D's spaces (goal fixed at (0.4, 0.4))."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(-0.1, 0.1, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = np.zeros(2, np.float32)
        self.t = 0
        return self.pos.copy(), {}

    def step(self, action):
        self.pos = self.pos + np.clip(action, -0.1, 0.1)
        self.t += 1
        return self.pos.copy(), -float(np.linalg.norm(self.pos - 0.4)), False, self.t >= 20, {}


def test_agent_adapts_to_a_users_env_and_refuses_mismatched_spaces(trained):
    agent = Agent.load(trained)
    returns = agent.adapt(MyNav(), steps=1, episodes=3)
    assert len(returns) == 2 and all(np.isfinite(returns))
    with pytest.raises(SpaceError, match="do not match"):
        agent.adapt(gym.make("CartPole-v1"), steps=1, episodes=2)


def test_rl2_through_the_cli(tmp_path, capsys):
    run = tmp_path / "rl2"
    assert (
        main(
            [
                "train",
                "rl2",
                "--env",
                "Bandit-v0",
                "--episodes-per-task",
                "4",
                "--meta-batch-size",
                "8",
                "--minibatches",
                "2",
                "--hidden-size",
                "16",
                "--meta-iterations",
                "2",
                "--run-dir",
                str(run),
                "--no-progress",
            ]
        )
        == 0
    )
    assert main(["evaluate", str(run), "--num-tasks", "5"]) == 0
    out = capsys.readouterr().out
    assert "| rl2 |" in out and "episode 4" in out
    sampled = json.loads((run / "eval.json").read_text())
    assert main(["evaluate", str(run), "--num-tasks", "5", "--greedy"]) == 0
    greedy = json.loads((run / "eval.json").read_text())
    assert (sampled["protocol"]["deterministic"], greedy["protocol"]["deterministic"]) == (
        False,
        True,
    )
    assert main(["evaluate", str(run), "--num-tasks", "0"]) != 0
    assert "num_tasks must be positive" in capsys.readouterr().err
    assert main(["evaluate", str(run), "--tune-later-lr"]) != 0
    assert "RL² adapts without them" in capsys.readouterr().err
    assert main(["report", str(run)]) == 0
    assert "trials of 4 episodes" in (run / "report.md").read_text()
    with pytest.raises(Exception, match="adapts within a trial"):
        Agent.load(run)
    # `adapt` plays one trial on the task: the return of each episode, and the total
    assert main(["adapt", str(run), "--task", '{"arm_probs": [0.1, 0.2, 0.9, 0.3, 0.4]}']) == 0
    out = capsys.readouterr().out
    assert "episode 4 of the trial" in out and "episode 5" not in out and "total over" in out
    # a longer-trial run that starts from this one's parameters
    warm = tmp_path / "warm"
    args = ["train", "rl2", "--env", "Bandit-v0", "--episodes-per-task", "8"]
    args += ["--meta-batch-size", "8", "--minibatches", "2", "--meta-iterations", "1"]
    args += ["--run-dir", str(warm), "--no-progress", "--init-from", str(run)]
    assert main([*args, "--hidden-size", "16"]) == 0
    assert f"init_from: {run}" in (warm / "config.yaml").read_text()
    assert main([*args, "--hidden-size", "8", "--overwrite"]) != 0
    assert "tensor 'param.core.weight_ih_l0' has shape" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kind, clock, separate, prev_obs",
    [
        ("gru", False, False, False),
        ("transformer", False, False, False),
        ("gru", True, False, False),
        ("gru", False, True, False),
        ("transformer", True, False, True),
    ],
)
def test_trial_agent_sees_what_the_trained_policy_saw(kind, clock, separate, prev_obs):

    from fastadapt.config import RL2Config
    from fastadapt.learners.rl2 import RL2, collect_trials
    from fastadapt.tasks import sample_tasks

    cfg = RL2Config(
        env="TabularMDP-v0",
        episodes_per_task=3,
        policy=kind,
        hidden_size=16,
        heads=2,
        time_inputs=clock,
        separate_critic=separate,
        prev_obs_inputs=prev_obs,
    )
    learner = RL2(cfg)
    tasks = sample_tasks(learner.family, 2, seed=0)
    trials = collect_trials(learner.family, learner.policy, tasks, 3, seed=1, deterministic=True)
    agent = TrialAgent(learner)
    obs_dim, A = learner.policy.obs_dim, learner.policy.action_dim
    for b in range(2):  # replay each trial through the agent: the same inputs, the same actions
        agent.reset()
        L = int(trials.mask[b].sum())
        for t in range(L):
            assert agent.act(trials.inputs[b, t, :obs_dim].numpy(), deterministic=True) == int(
                trials.actions[b, t]
            )
            done = bool(trials.inputs[b, t + 1, obs_dim + A + 1]) if t + 1 < L else True
            agent.observe(float(trials.rewards[b, t]), done)
        assert agent.episode == 3
    # a trial of a Gymnasium env of the family, then misuse
    env = gym.make("fastadapt/TabularMDP-v0", task=tasks[0])
    assert len(agent.play(env, episodes=2)) == 2 and agent.episode == 2
    assert len(agent.play(env)) == 3  # the trial length it was trained on
    obs, _ = env.reset(seed=0)
    if kind == "transformer":  # its positions end with the trial it was trained on
        with pytest.raises(Exception, match="exceeds the transformer's max_len 30"):
            agent.act(obs)
    agent.reset()
    agent.act(obs)
    with pytest.raises(Exception, match="act\\(\\) twice"):
        agent.act(obs)
    agent.observe(0.0, False)
    with pytest.raises(Exception, match="observe\\(\\) without act"):
        agent.observe(0.0, False)
    with pytest.raises(SpaceError, match="observation of shape"):
        agent.act(np.zeros(3, np.float32))
    with pytest.raises(SpaceError, match="do not match"):
        agent.play(gym.make("CartPole-v1"))


def test_select_scores_runs_on_the_same_training_split_tasks_and_picks_the_best(
    trained, tmp_path, capsys
):
    from fastadapt.evaluation import (
        TUNING_STREAM,
        VALIDATION_STREAM,
        EvalConfig,
        select_runs,
        validation_returns,
        validation_score,
    )
    from fastadapt.tasks import sample_tasks
    from fastadapt.train import load_learner

    other = tmp_path / "nav_seed1"
    assert main(["train", "maml", "--run-dir", str(other), *TINY, "--seed", "1"]) == 0
    cfg = EvalConfig(num_steps=2, episodes_per_step=2)
    picked = select_runs([trained, other, trained], cfg, num_tasks=3)
    scores = [r["score"] for r in picked["runs"]]
    assert scores[0] == scores[2]  # the same run on the same tasks and episode seeds
    assert picked["best"] == scores.index(max(scores))  # the first of equals
    assert picked["task_seed"] == 0  # the first run's seed
    assert [r["seed"] for r in picked["runs"]] == [0, 1, 0]
    # the score is the mean return after the adaptation steps, on training-split tasks only
    learner = load_learner(other)
    returns, lrs = validation_returns(learner, cfg, 3, task_seed=0)
    assert returns.shape == (3, 3) and lrs == [0.1, 0.05]
    assert validation_score(returns) == pytest.approx(float(returns[1:].mean()))
    assert picked["runs"][1]["score"] == pytest.approx(validation_score(returns))
    assert picked["runs"][1]["returns"] == pytest.approx(returns.mean(axis=1).tolist())
    family = learner.family
    val = sample_tasks(family, 3, 0, split="train", index=VALIDATION_STREAM)
    for elsewhere in (
        sample_tasks(family, 3, 0, split="test"),
        sample_tasks(family, 3, 0, split="train", index=TUNING_STREAM),
        sample_tasks(family, 3, 0, split="train", index=0),  # meta-iteration 0's tasks
    ):
        assert val != elsewhere
    # tuned rates: picked per step from the scales, as the baselines' are
    _, tuned = validation_returns(learner, cfg, 3, task_seed=0, tune_lr=True)
    for lr, base in zip(tuned, (0.1, 0.05), strict=True):
        assert min(abs(lr / base - x) for x in cfg.baseline_lr_scales) < 1e-9
    # the command line: a table, the choice, and the JSON
    out = tmp_path / "sel.json"
    argv = [str(trained), str(other), "--num-tasks", "3", "--num-steps", "2"]
    assert main(["select", *argv, "--episodes-per-step", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    best = json.loads(out.read_text())
    assert best["runs"][0]["score"] == pytest.approx(scores[0])
    assert f"best: {best['runs'][best['best']]['run_dir']}" in printed
    assert "(best)" in printed


def test_select_refuses_runs_of_different_families_and_no_runs(trained, tmp_path, capsys):
    bandit = tmp_path / "bandit"
    argv = ["train", "maml", "--env", "Bandit-v0", "--run-dir", str(bandit), *TINY]
    assert main(argv) == 0
    assert main(["select", str(trained), str(bandit), "--num-tasks", "2"]) == 2
    assert "different families" in capsys.readouterr().err
    from fastadapt.errors import ConfigError
    from fastadapt.evaluation import EvalConfig, select_runs

    with pytest.raises(ConfigError, match="at least one run"):
        select_runs([], EvalConfig())
