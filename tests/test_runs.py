import dataclasses
import json
import pickle
import subprocess
import sys
import time

import pytest
import torch

from fastadapt.config import MAMLConfig
from fastadapt.errors import CheckpointError, ConfigError, RunDirError
from fastadapt.runs import load_checkpoint, read_metrics, save_checkpoint
from fastadapt.train import load_learner, make_learner, resume_run, train

CFG = MAMLConfig(
    meta_batch_size=3,
    episodes_per_task=3,
    meta_iterations=4,
    checkpoint_every=1,
    keep_checkpoints=2,
)


def final_params(run_dir):
    learner = load_learner(run_dir)
    return {k: v.detach() for k, v in learner.trainable().items()}


def test_resume_is_bit_identical_to_uninterrupted(tmp_path):
    train(make_learner("maml", CFG), tmp_path / "full", progress=False)
    train(make_learner("maml", CFG), tmp_path / "cut", progress=False, stop_after=2)
    resume_run(tmp_path / "cut", progress=False)
    a, b = final_params(tmp_path / "full"), final_params(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["return/post_adapt"] for r in read_metrics(tmp_path / "full")] == [
        r["return/post_adapt"] for r in read_metrics(tmp_path / "cut")
    ]
    # the training clock continues across the resume instead of restarting at 0
    wall = [r["time/wall_s"] for r in read_metrics(tmp_path / "cut")]
    assert wall == sorted(wall) and wall[0] > 0
    assert load_learner(tmp_path / "cut").wall_s == pytest.approx(wall[-1])


def test_resume_with_adam_state_is_bit_identical(tmp_path):
    cfg = dataclasses.replace(CFG, outer="adam", outer_lr=1e-2)
    train(make_learner("metasgd", cfg), tmp_path / "full", progress=False)
    train(make_learner("metasgd", cfg), tmp_path / "cut", progress=False, stop_after=3)
    resume_run(tmp_path / "cut", progress=False)
    a, b = final_params(tmp_path / "full"), final_params(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_state_passes_between_live_learners():
    """``load_state`` of another learner's ``state_tensors`` gives the receiver its own copies
    (Adam's moments once aliased the sender's, so both stepped them)."""
    cfg = dataclasses.replace(CFG, outer="adam", outer_lr=1e-2)
    a, b = make_learner("metasgd", cfg), make_learner("metasgd", cfg)
    a.step()
    b.load_state(a.state_tensors(), a.state_meta())
    a.step(), b.step()
    pa, pb = a.trainable(), b.trainable()
    assert all(torch.equal(pa[k], pb[k]) for k in pa)


def test_checkpoints_are_pruned_and_finished_run_is_protected(tmp_path):
    run = tmp_path / "r"
    train(make_learner("maml", CFG), run, progress=False)
    assert sorted(p.name for p in (run / "checkpoints").glob("*.json")) == [
        "iter_000003.json",
        "iter_000004.json",
    ]
    before = (run / "model.safetensors").read_bytes()
    with pytest.raises(RunDirError, match="finished run.*--overwrite"):
        train(make_learner("maml", CFG), run, progress=False)
    assert (run / "model.safetensors").read_bytes() == before


def test_a_trained_baseline_is_reused_only_with_the_same_settings(tmp_path):
    from fastadapt.config import EvalConfig
    from fastadapt.evaluation import pretrain_baseline

    ev = EvalConfig(num_tasks=2, pretrain_iterations=2)
    run = tmp_path / "r"
    learner = make_learner("maml", CFG)
    train(learner, run, progress=False)
    first = pretrain_baseline(learner, ev, run, progress=False)
    model = run / "baselines" / "pretrain" / "model.safetensors"
    stamp = model.stat().st_mtime_ns
    again = pretrain_baseline(learner, ev, run, progress=False)
    assert model.stat().st_mtime_ns == stamp  # loaded, not trained again
    pa, pb = first.trainable(), again.trainable()
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    # another seed's run pointed at the same directory gets its own baseline, not this one
    other = make_learner("maml", dataclasses.replace(CFG, seed=1))
    theirs = pretrain_baseline(other, ev, run, progress=False).trainable()
    fresh = pretrain_baseline(other, ev, None, progress=False).trainable()
    assert all(torch.equal(theirs[k], fresh[k]) for k in theirs)
    assert not all(torch.equal(theirs[k], pa[k]) for k in pa)


def test_overwrite_removes_the_old_runs_evaluation_and_baselines(tmp_path):
    from fastadapt.config import EvalConfig
    from fastadapt.evaluation import evaluate_learner, write_eval

    run = tmp_path / "r"
    learner = make_learner("maml", CFG)
    train(learner, run, progress=False)
    ev = EvalConfig(num_tasks=2, num_steps=1, episodes_per_step=2, pretrain_iterations=1)
    write_eval(evaluate_learner(learner, ev, run, progress=False), run)
    assert (run / "baselines" / "pretrain").is_dir() and (run / "eval.json").exists()
    (run / "notes.txt").write_text("mine")
    train(
        make_learner("maml", dataclasses.replace(CFG, seed=1)), run, overwrite=True, progress=False
    )
    left = sorted(p.name for p in run.iterdir())
    assert left == [
        "checkpoints",
        "config.yaml",
        "metrics.csv",
        "model.json",
        "model.safetensors",
        "notes.txt",
        "tb",
    ]


def test_corrupt_truncated_and_foreign_checkpoints_are_refused(tmp_path):
    run = tmp_path / "r"
    train(make_learner("maml", CFG), run, progress=False)
    data = (run / "model.safetensors").read_bytes()
    (run / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(run / "model.json")
    (run / "model.safetensors").write_bytes(data)
    (run / "model.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(run / "model.json")
    (run / "model.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CheckpointError, match="not a fastadapt checkpoint"):
        load_checkpoint(run / "model.json")


def test_checkpoint_of_another_family_or_shape_is_refused(tmp_path):
    train(make_learner("maml", CFG), tmp_path / "nav", progress=False)
    other = dataclasses.replace(CFG, env="PendulumDynamics-v0", meta_iterations=2)
    learner = make_learner("maml", other)
    tensors, meta = load_checkpoint(tmp_path / "nav" / "model.json")
    from fastadapt.runs import check_compatible
    from fastadapt.train import run_identity

    with pytest.raises(CheckpointError, match="env 'Navigation2D-v0'.*'PendulumDynamics-v0'"):
        check_compatible(meta, json.loads(json.dumps(run_identity(learner))), "ckpt")
    # resuming a run whose newest checkpoint belongs to another architecture
    cp = tmp_path / "nav" / "checkpoints"
    newest = sorted(cp.glob("*.json"))[-1]
    m = json.loads(newest.read_text())
    m["policy"]["hidden"] = [64]
    newest.write_text(json.dumps(m))
    (tmp_path / "nav" / "model.json").unlink()
    with pytest.raises(CheckpointError, match="policy"):
        resume_run(tmp_path / "nav", progress=False)
    # a CAVIA context is part of the architecture
    cavia = make_learner("maml", dataclasses.replace(CFG, context_params=3))
    with pytest.raises(CheckpointError, match="context_dim"):
        check_compatible(meta, run_identity(cavia), "ckpt")


def test_records_without_a_context_or_with_context_dim_0_load(tmp_path):
    # without a context the record is as it was before the option; a record that spells out
    # context_dim 0 (as some runs did) is the same architecture
    train(make_learner("maml", CFG), tmp_path / "nav", progress=False)
    path = tmp_path / "nav" / "model.json"
    meta = json.loads(path.read_text())
    assert "context_dim" not in meta["policy"]
    meta["policy"]["context_dim"] = 0
    path.write_text(json.dumps(meta))
    assert load_learner(tmp_path / "nav").iteration == CFG.meta_iterations
    meta["policy"]["context_dim"] = 3
    path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="context_dim"):
        load_learner(tmp_path / "nav")


class Evil:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('x')",))


def test_pickle_payload_is_never_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    payload = pickle.dumps({"layers.0.weight": Evil()})
    (tmp_path / "model.safetensors").write_bytes(payload)
    (tmp_path / "model.json").write_text(
        json.dumps({"format": "fastadapt-checkpoint-v1", "sha256": "0"})
    )
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "model.json")
    import hashlib

    (tmp_path / "model.json").write_text(
        json.dumps(
            {"format": "fastadapt-checkpoint-v1", "sha256": hashlib.sha256(payload).hexdigest()}
        )
    )
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_checkpoint(tmp_path / "model.json")
    assert not (tmp_path / "PWNED").exists()


def test_checkpoint_roundtrip(tmp_path):
    t = {"a": torch.arange(6.0).view(2, 3), "b": torch.tensor([1], dtype=torch.int64)}
    save_checkpoint(tmp_path / "c", t, {"x": 1})
    back, meta = load_checkpoint(tmp_path / "c")
    assert torch.equal(back["a"], t["a"]) and meta["x"] == 1
    assert not list(tmp_path.glob("*.tmp"))


def test_kill_minus_9_loses_at_most_work_since_last_checkpoint(tmp_path):
    run = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "fastadapt.cli",
        "train",
        "maml",
        "--run-dir",
        str(run),
        "--meta-iterations",
        "400",
        "--meta-batch-size",
        "3",
        "--episodes-per-task",
        "3",
        "--checkpoint-every",
        "2",
        "--no-progress",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        ck = (
            list((run / "checkpoints").glob("iter_*.json"))
            if (run / "checkpoints").exists()
            else []
        )
        if len(ck) >= 2:
            break
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    assert not (run / "model.json").exists()
    done = max(int(p.stem.split("_")[1]) for p in (run / "checkpoints").glob("iter_*.json"))
    # the interrupted run continues from its last checkpoint and matches an uninterrupted one
    cfg = dataclasses.replace(CFG, meta_iterations=done + 2, checkpoint_every=2)
    import yaml

    data = yaml.safe_load((run / "config.yaml").read_text())
    data["config"]["meta_iterations"] = done + 2
    (run / "config.yaml").write_text(yaml.safe_dump(data))
    resume_run(run, progress=False)
    rows = read_metrics(run)
    assert [int(r["iteration"]) for r in rows] == list(range(1, done + 3))
    train(make_learner("maml", cfg), tmp_path / "ref", progress=False)
    a, b = final_params(run), final_params(tmp_path / "ref")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "algorithm,cfg",
    [
        (
            "reptile",
            "ReptileConfig(meta_batch_size=3, episodes_per_task=3, meta_iterations=4, "
            "checkpoint_every=1, num_inner_steps=2)",
        ),
        (
            "promp",
            "ProMPConfig(meta_batch_size=3, episodes_per_task=3, meta_iterations=4, "
            "checkpoint_every=1, promp_steps=2)",
        ),
        (
            "rl2",
            "RL2Config(env='Bandit-v0', meta_batch_size=8, episodes_per_task=4, "
            "meta_iterations=4, checkpoint_every=1, hidden_size=16, minibatches=2)",
        ),
        (
            "maml",
            "MAMLConfig(meta_batch_size=3, episodes_per_task=3, meta_iterations=4, "
            "checkpoint_every=1, task_sampler='prioritized', task_pool_size=5)",
        ),
        (
            "metasgd",
            "MAMLConfig(meta_batch_size=3, episodes_per_task=3, meta_iterations=4, "
            "checkpoint_every=1, context_params=2, inner_lr=(1.0,))",
        ),
    ],
)
def test_every_learner_resumes_bit_identically(tmp_path, algorithm, cfg):
    from fastadapt.config import MAMLConfig, ProMPConfig, ReptileConfig, RL2Config  # noqa: F401

    config = eval(cfg)
    train(make_learner(algorithm, config), tmp_path / "full", progress=False)
    train(make_learner(algorithm, config), tmp_path / "cut", progress=False, stop_after=2)
    resume_run(tmp_path / "cut", progress=False)
    a, b = final_params(tmp_path / "full"), final_params(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_report_compares_runs_side_by_side(tmp_path):
    from fastadapt.cli import main
    from fastadapt.config import ReptileConfig

    train(make_learner("maml", CFG), tmp_path / "maml", progress=False)
    rcfg = ReptileConfig(meta_batch_size=3, episodes_per_task=3, meta_iterations=4)
    train(make_learner("reptile", rcfg), tmp_path / "reptile", progress=False)
    for run in ("maml", "reptile"):
        assert (
            main(
                [
                    "evaluate",
                    str(tmp_path / run),
                    "--num-tasks",
                    "3",
                    "--episodes-per-step",
                    "2",
                    "--num-steps",
                    "1",
                    "--baselines",
                    "scratch",
                    "--no-progress",
                ]
            )
            == 0
        )
    assert (
        main(
            [
                "report",
                str(tmp_path / "maml"),
                str(tmp_path / "reptile"),
                "--out",
                str(tmp_path / "cmp"),
            ]
        )
        == 0
    )
    text = (tmp_path / "cmp" / "report.md").read_text()
    assert "maml (maml)" in text and "reptile (reptile)" in text
    assert (tmp_path / "cmp" / "training.png").exists()
    assert (tmp_path / "cmp" / "adaptation_report.png").exists()


def test_init_from_starts_from_another_runs_parameters(tmp_path):
    from fastadapt.config import RL2Config
    from fastadapt.train import init_from_run

    short = RL2Config(
        env="Bandit-v0",
        meta_batch_size=8,
        episodes_per_task=3,
        meta_iterations=3,
        hidden_size=16,
        minibatches=2,
    )
    train(make_learner("rl2", short), tmp_path / "short", progress=False)
    longer = dataclasses.replace(short, episodes_per_task=6, meta_iterations=2, checkpoint_every=1)
    warm = dataclasses.replace(longer, init_from=str(tmp_path / "short"))
    # by hand: a fresh learner, the short run's parameters copied in, then two iterations
    by_hand = make_learner("rl2", longer)
    init_from_run(by_hand, tmp_path / "short")
    src = final_params(tmp_path / "short")
    assert all(torch.equal(by_hand.trainable()[k].detach(), src[k]) for k in src)
    # the critic's units come with its parameters
    source = load_learner(tmp_path / "short")
    assert source.value_std != 1.0
    assert (by_hand.value_mean, by_hand.value_std) == (source.value_mean, source.value_std)
    fresh = make_learner("rl2", longer).trainable()["core.weight_hh_l0"]
    assert not torch.equal(fresh, src["core.weight_hh_l0"])
    by_hand.step()
    by_hand.step()
    # through train(): the same, and an interrupted warm run resumes from its own checkpoint
    train(make_learner("rl2", warm), tmp_path / "warm", progress=False)
    train(make_learner("rl2", warm), tmp_path / "cut", progress=False, stop_after=1)
    resume_run(tmp_path / "cut", progress=False)
    for run in ("warm", "cut"):
        got = final_params(tmp_path / run)
        assert all(torch.equal(got[k], by_hand.trainable()[k].detach()) for k in got)


def test_init_from_refuses_mismatched_or_missing_parameters(tmp_path):
    train(make_learner("maml", CFG), tmp_path / "a", progress=False)
    wide = dataclasses.replace(CFG, hidden=(8, 8), init_from=str(tmp_path / "a"))
    with pytest.raises(
        CheckpointError, match=r"init_from .* tensor 'param.layers.0.weight' has shape"
    ):
        train(make_learner("maml", wide), tmp_path / "b", progress=False)
    metasgd = dataclasses.replace(CFG, init_from=str(tmp_path / "a"))
    with pytest.raises(CheckpointError, match="init_from .* lacks tensor 'param.inner_lr."):
        train(make_learner("metasgd", metasgd), tmp_path / "c", progress=False)
    with pytest.raises(CheckpointError, match="needs both"):
        missing = dataclasses.replace(CFG, init_from=str(tmp_path / "nope"))
        train(make_learner("maml", missing), tmp_path / "d", progress=False)
    own = dataclasses.replace(CFG, init_from=str(tmp_path / "a"))
    with pytest.raises(ConfigError, match="own directory"):
        train(make_learner("maml", own), tmp_path / "a", overwrite=True, progress=False)
    assert (tmp_path / "a" / "model.json").exists()  # the finished run is untouched


def tiny_rl2(**overrides):
    """A one-iteration RL² config on 5-armed bandits: 8 trials of 3 pulls, a 16-unit GRU."""
    from fastadapt.config import RL2Config

    base = dict(env="Bandit-v0", meta_batch_size=8, episodes_per_task=3, meta_iterations=1)
    return RL2Config(**{**base, "hidden_size": 16, "minibatches": 2, **overrides})


@pytest.mark.parametrize(
    "option, overrides, width, first_weight",
    [  # inputs: obs, 5 arms, reward, done, then the clock (2) or the previous obs (1)
        ("time_inputs", {}, 1 + 5 + 2 + 2, "param.core.weight_ih_l0"),
        (
            "prev_obs_inputs",
            {"policy": "transformer", "heads": 2},
            1 + 5 + 2 + 1,
            "param.embed.weight",
        ),
    ],
)
def test_rl2_extra_inputs_survive_a_checkpoint(tmp_path, option, overrides, width, first_weight):
    cfg = tiny_rl2(**{option: True, **overrides})
    train(make_learner("rl2", cfg), tmp_path / "extra", progress=False)
    back = load_learner(tmp_path / "extra")
    assert getattr(back.policy, option) and back.policy.input_dim == width
    # a policy without the option reads narrower inputs: starting from this run is refused
    plain = dataclasses.replace(cfg, **{option: False}, init_from=str(tmp_path / "extra"))
    with pytest.raises(CheckpointError, match=rf"tensor '{first_weight}' has shape"):
        train(make_learner("rl2", plain), tmp_path / "plain", progress=False)


def test_rl2_separate_critic_survives_a_checkpoint(tmp_path):
    cfg = tiny_rl2(separate_critic=True, meta_iterations=2, checkpoint_every=1)
    learner = make_learner("rl2", cfg)
    train(learner, tmp_path / "sep", progress=False)
    back = load_learner(tmp_path / "sep")
    assert back.policy.separate_critic
    for name, p in learner.policy.named_parameters():
        torch.testing.assert_close(dict(back.policy.named_parameters())[name], p)
    # a run with a shared model lacks the critic's own: a separate critic cannot start from it
    shared = dataclasses.replace(cfg, separate_critic=False, meta_iterations=1)
    train(make_learner("rl2", shared), tmp_path / "shared", progress=False)
    again = dataclasses.replace(cfg, init_from=str(tmp_path / "shared"))
    with pytest.raises(CheckpointError, match="lacks tensor 'param.critic_core"):
        train(make_learner("rl2", again), tmp_path / "again", progress=False)


def test_a_transformer_starts_from_a_run_on_trials_of_another_length(tmp_path):
    from fastadapt.train import init_from_run

    short = tiny_rl2(policy="transformer", heads=2, layers=1, separate_critic=True)
    train(make_learner("rl2", short), tmp_path / "short", progress=False)
    src = final_params(tmp_path / "short")
    assert src["pos"].shape == (3, 16)  # one row per step of a 3-pull trial
    longer = dataclasses.replace(short, episodes_per_task=7)
    learner = make_learner("rl2", longer)
    fresh = {k: v.detach().clone() for k, v in learner.trainable().items()}
    init_from_run(learner, tmp_path / "short")
    got = learner.trainable()
    for name in ("pos", "critic_pos"):  # the rows both have are the short run's, the rest fresh
        assert torch.equal(got[name][:3].detach(), src[name])
        assert torch.equal(got[name][3:].detach(), fresh[name][3:])
        assert not torch.equal(fresh[name][:3], src[name])
    assert all(torch.equal(got[k].detach(), src[k]) for k in src if not k.endswith("pos"))
    # and back: a shorter trial takes the first rows of a longer run's table
    warm = dataclasses.replace(longer, init_from=str(tmp_path / "short"))
    train(make_learner("rl2", warm), tmp_path / "long", progress=False)
    back = make_learner("rl2", dataclasses.replace(short, episodes_per_task=2))
    init_from_run(back, tmp_path / "long")
    assert torch.equal(back.trainable()["pos"].detach(), final_params(tmp_path / "long")["pos"][:2])
    # another width is still refused, position table included
    wide = dataclasses.replace(longer, hidden_size=32, init_from=str(tmp_path / "short"))
    with pytest.raises(CheckpointError, match="init_from .* has shape"):
        train(make_learner("rl2", wide), tmp_path / "wide", progress=False)
