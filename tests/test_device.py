"""Devices: a GPU run gives the CPU's results up to rounding, its checkpoints load and resume on
either device, and asking for a GPU where there is none is a clear error. The CUDA tests are
skipped on machines without a GPU."""

import dataclasses

import numpy as np
import pytest
import torch

from fastadapt.agent import Agent
from fastadapt.config import EvalConfig, MAMLConfig, RL2Config
from fastadapt.errors import ConfigError
from fastadapt.evaluation import evaluate_learner
from fastadapt.learners import maml
from fastadapt.optim.trpo import flat_grad
from fastadapt.policies import MLPPolicy
from fastadapt.runs import read_metrics
from fastadapt.runtime import resolve_device
from fastadapt.train import load_learner, make_learner, resume_run, train

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
needs_no_cuda = pytest.mark.skipif(HAS_CUDA, reason="this machine has a CUDA GPU")

NAV = MAMLConfig(meta_batch_size=4, episodes_per_task=4, meta_iterations=3, checkpoint_every=1)
LEARNERS = {
    "maml-trpo nav": ("maml", NAV),
    "maml-trpo nav, steps unit, inner Hessians subsampled": (
        "maml",
        dataclasses.replace(NAV, batch_unit="steps", hessian_subsample=2),
    ),
    "cavia cartpole (categorical)": (
        "maml",
        dataclasses.replace(NAV, env="CartPoleDynamics-v0", context_params=2, inner_lr=(1.0,)),
    ),
    "metasgd adam first-order": (
        "metasgd",
        dataclasses.replace(NAV, outer="adam", outer_lr=1e-2, first_order=True),
    ),
    "rl2 gru bandits": (
        "rl2",
        RL2Config(
            env="Bandit-v0",
            meta_batch_size=8,
            episodes_per_task=4,
            meta_iterations=3,
            hidden_size=16,
            minibatches=2,
            checkpoint_every=1,
        ),
    ),
}


def on(device, cfg):
    return dataclasses.replace(cfg, device=device)


def params(learner):
    return {k: v.detach().cpu() for k, v in learner.trainable().items()}


@pytest.mark.parametrize("device", ["cpu", "cuda"] if HAS_CUDA else ["cpu"])
@pytest.mark.parametrize("discrete", [False, True])
def test_actions_are_drawn_from_the_cpu_generator_on_any_device(device, discrete):
    policy = MLPPolicy(2, 3, discrete, hidden=(4,))
    p = policy.init_params(torch.Generator().manual_seed(0))
    obs = torch.randn(50, 2, generator=torch.Generator().manual_seed(1))
    d = policy.dist({k: v.to(device) for k, v in p.items()}, obs.to(device))
    a = policy.sample(d, torch.Generator().manual_seed(5)).cpu()
    d = policy.dist(p, obs)
    gen = torch.Generator().manual_seed(5)
    if discrete:
        expected = torch.multinomial(torch.softmax(d.loc, -1), 1, generator=gen).squeeze(-1)
        assert torch.equal(a, expected)
    else:
        expected = d.loc + torch.exp(d.log_std) * torch.randn((50, 3), generator=gen)
        torch.testing.assert_close(a, expected)


@needs_no_cuda
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
@pytest.mark.parametrize("algorithm", ["maml", "rl2"])
def test_asking_for_a_gpu_where_there_is_none_is_a_clear_error(name, algorithm):
    with pytest.raises(ConfigError, match="sees no CUDA GPU.*use --device cpu"):
        resolve_device(name)
    cfg = on(name, LEARNERS["rl2 gru bandits"][1] if algorithm == "rl2" else NAV)
    with pytest.raises(ConfigError, match=f"device '{name}'"):
        make_learner(algorithm, cfg)


@needs_no_cuda
def test_a_gpu_runs_model_loads_on_the_cpu_with_a_warning(tmp_path):
    learner = make_learner("maml", NAV)
    learner.config = on("cuda", NAV)  # what a GPU run records (it trains on the CPU here)
    train(learner, tmp_path / "gpu", progress=False)
    with pytest.warns(UserWarning, match="trained on 'cuda'.*loads on the CPU"):
        loaded = load_learner(tmp_path / "gpu")
    assert loaded.device == torch.device("cpu")
    a, b = params(learner), params(loaded)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert Agent.load(tmp_path / "gpu", device="cpu").device == torch.device("cpu")


@needs_no_cuda
def test_a_gpu_run_resumes_on_the_cpu_when_told(tmp_path, capsys):
    from fastadapt.cli import main

    learner = make_learner("maml", NAV)
    learner.config = on("cuda", NAV)
    train(learner, tmp_path / "gpu", progress=False, stop_after=1)
    with pytest.raises(ConfigError, match="sees no CUDA GPU.*use --device cpu"):
        resume_run(tmp_path / "gpu", progress=False)
    assert main(["train", "--resume", str(tmp_path / "gpu"), "--device", "cpu"]) == 0
    assert "resumed and finished" in capsys.readouterr().out
    # the other form takes the device too
    learner = make_learner("maml", NAV)
    learner.config = on("cuda", NAV)
    train(learner, tmp_path / "gpu2", progress=False, stop_after=1)
    resume = ["train", "maml", "--run-dir", str(tmp_path / "gpu2"), "--resume", "--no-progress"]
    assert main(resume) == 2
    assert "sees no CUDA GPU" in capsys.readouterr().err
    assert main([*resume, "--device=cpu"]) == 0
    assert load_learner(tmp_path / "gpu2").config.device == "cpu"
    train(make_learner("maml", NAV), tmp_path / "cpu", progress=False)
    finished = load_learner(tmp_path / "gpu")  # its final model records where it finished
    assert finished.config.device == "cpu"
    a, b = params(finished), params(load_learner(tmp_path / "cpu"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def step_in_lockstep(ref, other, monkeypatch, other_step=None):
    """Meta-iterate two learners side by side from the same parameters: each iteration, compare
    their returns and then either their new parameters or, for a TRPO outer step, its inputs (the
    meta-gradient ``g`` and the Fisher's product ``F g``); then give ``other`` ``ref``'s state
    (parameters and optimizer, as a checkpoint holds them). TRPO's parameters are not
    comparable: its conjugate-gradient solve (damping 1e-5, as the MAML paper's) turns
    rounding-level differences in ``F v`` into parameter differences of ~1e-3 in one iteration,
    so two devices (or one CPU thread against two) cannot agree on them."""
    inputs = []  # (g, F g) of each TRPO step: ref's, then other's
    real = maml.trpo_step

    def recording_trpo_step(params, loss_fn, loss_kl_fn, fvp, *args):
        g = flat_grad(loss_fn(), params)
        inputs.append((g.cpu(), fvp(g).cpu()))
        return real(params, loss_fn, loss_kl_fn, fvp, *args)

    monkeypatch.setattr(maml, "trpo_step", recording_trpo_step)
    # cuDNN's recurrent kernels may use TF32 (torch.backends.cudnn.allow_tf32, on by default)
    rl2 = isinstance(ref.config, RL2Config)
    tol = {"rtol": 1e-2, "atol": 1e-3} if rl2 else {"rtol": 1e-3, "atol": 1e-4}
    for _ in range(ref.config.meta_iterations):
        inputs.clear()
        mr, mo = ref.step(), (other_step or other.step)()
        for key in ("return/pre_adapt", "return/post_adapt"):
            assert mo[key] == pytest.approx(mr[key], rel=1e-3, abs=1e-3), key
        if inputs:
            for r, o in zip(*inputs, strict=True):
                torch.testing.assert_close(o, r, rtol=1e-3, atol=1e-4 * float(r.abs().max()))
        else:
            a, b = params(ref), params(other)
            for k in a:
                torch.testing.assert_close(b[k], a[k], **tol, msg=k)
        other.load_state(ref.state_tensors(), ref.state_meta())


@pytest.mark.parametrize("name", list(LEARNERS))
def test_each_iteration_agrees_under_other_rounding(name, monkeypatch):
    """One CPU thread against two (other reduction orders): the GPU test's check on any machine."""
    algorithm, cfg = LEARNERS[name]
    two, one = make_learner(algorithm, cfg), make_learner(algorithm, cfg)
    before = torch.get_num_threads()

    def one_thread_step():
        torch.set_num_threads(1)
        try:
            return one.step()
        finally:
            torch.set_num_threads(2)

    torch.set_num_threads(2)
    try:
        step_in_lockstep(two, one, monkeypatch, one_thread_step)
    finally:
        torch.set_num_threads(before)


@needs_cuda
@pytest.mark.parametrize("name", list(LEARNERS))
def test_training_on_the_gpu_gives_the_cpus_results(name, monkeypatch):
    algorithm, cfg = LEARNERS[name]
    cpu, gpu = make_learner(algorithm, on("cpu", cfg)), make_learner(algorithm, on("cuda", cfg))
    step_in_lockstep(cpu, gpu, monkeypatch)


@needs_cuda
def test_a_gpu_run_resumes_exactly_and_loads_on_either_device(tmp_path):
    cfg = on("cuda", NAV)
    train(make_learner("maml", cfg), tmp_path / "full", progress=False)
    train(make_learner("maml", cfg), tmp_path / "cut", progress=False, stop_after=1)
    resume_run(tmp_path / "cut", progress=False)
    a, b = params(load_learner(tmp_path / "full")), params(load_learner(tmp_path / "cut"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["return/post_adapt"] for r in read_metrics(tmp_path / "full")] == [
        r["return/post_adapt"] for r in read_metrics(tmp_path / "cut")
    ]
    on_cpu = load_learner(tmp_path / "full", "cpu")
    assert on_cpu.device == torch.device("cpu")
    assert all(torch.equal(params(on_cpu)[k], a[k]) for k in a)


@needs_cuda
def test_evaluation_and_the_agent_on_the_gpu_match_the_cpu(tmp_path):
    train(make_learner("maml", on("cuda", NAV)), tmp_path / "run", progress=False)
    ev = EvalConfig(num_tasks=3, episodes_per_step=3, num_steps=2, baselines=("scratch",))
    res = {
        dev: evaluate_learner(load_learner(tmp_path / "run", dev), ev, progress=False)
        for dev in ("cpu", "cuda")
    }
    for method, r in res["cpu"]["returns"].items():
        np.testing.assert_allclose(res["cuda"]["returns"][method]["mean"], r["mean"], rtol=1e-3)
    returns = {}
    for dev in ("cpu", "cuda"):
        agent = Agent.load(tmp_path / "run", device=dev)
        returns[dev] = agent.adapt({"goal_x": 0.3, "goal_y": -0.2}, steps=2, episodes=4)
        action = agent.act(np.zeros(2, dtype=np.float32))
        assert isinstance(action, np.ndarray) and action.shape == (2,)
    np.testing.assert_allclose(returns["cuda"], returns["cpu"], rtol=1e-3)
