"""Benchmark scripts end to end on tiny settings: the RL² scripts' JSON shape, ``--reuse`` and the
Transformer sampling comparison; the CartPole script with each gradient-based meta-learner; the
navigation script's training options and JSON shape; the navigation speed comparison and the learner
comparison's JSON; the Fisher-product timing; the CPU-against-GPU comparison (on the CPU twice)."""

import json
import runpy
import sys
from pathlib import Path

import pytest

from fastadapt.runs import read_config

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_script(monkeypatch: pytest.MonkeyPatch, name: str, *args: str) -> None:
    """Run ``benchmarks/<name>`` as its command line would, with ``args``."""
    script = BENCHMARKS / name
    monkeypatch.setattr(sys, "path", [str(BENCHMARKS), *sys.path])
    monkeypatch.setattr(sys, "argv", [str(script), *args])
    runpy.run_path(str(script), run_name="__main__")


def run_bandits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> list[dict]:
    out = tmp_path / "out.json"
    argv = ["--settings", "2x10,2x12", "--iterations", "1", "--eval-tasks", "20"]
    argv += ["--run-root", str(tmp_path / "runs"), "--no-progress", "--out", str(out), *args]
    run_script(monkeypatch, "rl2_bandits.py", *argv)
    return json.loads(out.read_text())["results"]


def test_bandit_benchmark_reuses_only_runs_whose_start_was_not_retrained(tmp_path, monkeypatch):
    stages = ["--iterations-long", "1", "--iterations-fine", "1"]
    first = run_bandits(tmp_path, monkeypatch, *stages)
    assert [(r["k"], r["n"], r["reused"]) for r in first] == [(2, 10, False), (2, 12, False)]
    short, long = first
    assert long["init_from"] == "k=2 n=10"
    assert long["iterations"] == 2 and "rl2_before_fine" in long
    for row in first:  # the keys the JSON names, and ours
        assert {"k", "n", "rl2", "paper", "ucb1", "thompson", "random", "bayes"} <= row.keys()
    assert long["ucb1_c"] >= 0 and long["ucb1_tuned"] > 0
    # the same settings again: every stage is read back, with the same figures
    again = run_bandits(tmp_path, monkeypatch, *stages, "--reuse")
    assert all(r["reused"] for r in again)
    assert [r["rl2"] for r in again] == [r["rl2"] for r in first]
    # the long stage changes: it is trained anew, and so is the fine stage that starts from it
    changed = run_bandits(
        tmp_path, monkeypatch, "--iterations-long", "2", "--iterations-fine", "1", "--reuse"
    )
    assert changed[0]["reused"] and not changed[1]["reused"]
    assert changed[1]["iterations"] == 3
    # where the reward goes: the regret script plays the same bandits as the benchmark's rl2 figure
    out = tmp_path / "regret.json"
    run = tmp_path / "runs" / "k2_n12_fine"
    argv = [str(run), "--tasks", "20", "--window", "4", "--late", "3", "--out", str(out)]
    run_script(monkeypatch, "bandit_regret.py", *argv)
    rl2, ucb1, thompson = json.loads(out.read_text())["results"]
    assert rl2["total"] == pytest.approx(changed[1]["rl2"])
    assert ucb1["total"] == pytest.approx(changed[1]["ucb1_tuned"])
    assert thompson["total"] == pytest.approx(changed[1]["thompson"])
    assert len(rl2["regret_by_window"]) == 3 and 0 <= rl2["best_arm_late"] <= 1
    # a third stage with less entropy: the first two are read back, only it trains
    committed = run_bandits(
        tmp_path,
        monkeypatch,
        "--iterations-long",
        "2",
        "--iterations-fine",
        "1",
        "--iterations-commit",
        "1",
        "--reuse",
    )
    long = committed[1]
    assert not long["reused"] and long["iterations"] == 4
    assert long["rl2_before_commit"] == changed[1]["rl2"]
    assert long["rl2_before_fine"] == changed[1]["rl2_before_fine"]
    assert (tmp_path / "runs" / "k2_n12_fine_commit").is_dir()
    # a separate critic: its own runs
    sep = run_bandits(tmp_path, monkeypatch, "--settings", "2x10", "--separate-critic")
    assert sep[0]["separate_critic"] and (tmp_path / "runs" / "sepcritic_k2_n10").is_dir()
    # a Transformer: its own runs, the longer trials starting from the shorter ones' model too
    tf = run_bandits(tmp_path, monkeypatch, *stages, "--policy", "transformer", "--reuse")
    assert [(r["policy"], r["init_from"], r["reused"]) for r in tf] == [
        ("transformer", "scratch", False),
        ("transformer", "k=2 n=10", False),
    ]
    assert (tmp_path / "runs" / "transformer_k2_n12_fine").is_dir()


def test_transformer_sampling_benchmark_compares_equal_outputs(tmp_path, monkeypatch):
    out = tmp_path / "tf.json"
    run_script(
        monkeypatch, "rl2_transformer.py", "--episodes", "1", "--repeats", "1", "--out", str(out)
    )
    (row,) = json.loads(out.read_text())["results"]
    assert row["trial_steps"] == 10 and row["max_abs_diff"] < 1e-4
    assert row["cached_s"] > 0 and row["recompute_s"] > 0 and row["collect_gru_s"] > 0


@pytest.mark.parametrize("algorithm", ["maml", "metasgd", "promp"])
def test_cartpole_benchmark_reports_the_chosen_meta_learner_against_the_baselines(
    tmp_path, monkeypatch, algorithm
):
    out = tmp_path / "out.json"
    argv = ["--algorithm", algorithm, "--meta-iterations", "1", "--eval-tasks", "4"]
    argv += ["--run-dir", str(tmp_path / "run"), "--no-progress", "--out", str(out)]
    run_script(monkeypatch, "maml_cartpole.py", *argv, "--gae-lambda", "0.9")
    result = json.loads(out.read_text())
    assert result["algorithm"] == algorithm
    assert result["gae_lambda"] == 0.9 == read_config(tmp_path / "run")["config"]["gae_lambda"]
    if algorithm != "promp":
        argv[argv.index(str(out))] = str(tmp_path / "hs.json")
        run_script(monkeypatch, "maml_cartpole.py", *argv, "--hessian-subsample", "2")
        assert read_config(tmp_path / "run")["config"]["hessian_subsample"] == 2
    assert {algorithm, "scratch", "pretrain"} <= result["returns"].keys()
    assert all(len(r) == 4 for r in result["returns"].values())
    # the paired lead is the learner's per-task return minus the baseline's, averaged over tasks
    # (reversed and forward tasks together), so it equals the difference of the two means
    for name, lead in result["maml_minus"].items():
        mine, theirs = result["returns"][algorithm], result["returns"][name]
        diff = [a - b for a, b in zip(mine, theirs, strict=True)]
        assert lead["mean"] == pytest.approx(diff, abs=1e-6)
    assert algorithm not in result["maml_minus"]
    if algorithm == "promp":  # the default outer rate is ProMP's own
        assert result["outer_lr"] == pytest.approx(0.001)
    else:
        assert result["outer_lr"] is None


def test_cartpole_benchmark_reuses_a_finished_run_of_the_same_settings_only(
    tmp_path, monkeypatch, capsys
):
    def run(*extra: str) -> dict:
        out = tmp_path / "out.json"
        argv = ["--meta-iterations", "1", "--eval-tasks", "4", "--run-dir", str(tmp_path / "run")]
        run_script(
            monkeypatch, "maml_cartpole.py", *argv, "--no-progress", "--out", str(out), *extra
        )
        return json.loads(out.read_text())

    first = run()
    model = (tmp_path / "run" / "model.safetensors").stat().st_mtime_ns
    again = run("--reuse")
    assert again["returns"] == first["returns"]
    assert (tmp_path / "run" / "model.safetensors").stat().st_mtime_ns == model  # not retrained
    # more test episodes: the same model, every method tested on 3 episodes per step
    more = run("--reuse", "--test-episodes", "3")
    assert (tmp_path / "run" / "model.safetensors").stat().st_mtime_ns == model
    assert more["test_episodes"] == 3 and more["episodes"] == 10
    eval_json = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert eval_json["protocol"]["episodes_per_step"] == 3
    assert more["returns"] != first["returns"]
    other = run("--reuse", "--pre-adapt-weight", "0.5")
    assert "trained with other settings (pre_adapt_weight" in capsys.readouterr().out
    assert other["pre_adapt_weight"] == 0.5
    assert read_config(tmp_path / "run")["config"]["pre_adapt_weight"] == 0.5


def test_cartpole_benchmark_picks_the_best_of_its_candidates_on_validation_tasks(
    tmp_path, monkeypatch
):
    out = tmp_path / "out.json"
    argv = ["--candidates", "2", "--seed", "1", "--meta-iterations", "1", "--eval-tasks", "4"]
    argv += ["--validation-tasks", "3", "--episodes", "2", "--context-params", "2"]
    argv += ["--run-dir", str(tmp_path / "run"), "--no-progress", "--out", str(out)]
    run_script(monkeypatch, "maml_cartpole.py", *argv)
    result = json.loads(out.read_text())
    sel = result["selection"]
    assert result["candidates"] == 2 and sel["seeds"] == [2, 3]  # seed S: K x S .. K x S + K - 1
    for pick in (sel["meta"], sel["pretrain"]):
        scores = [r["score"] for r in pick["runs"]]
        assert pick["best"] == scores.index(max(scores)) and pick["task_seed"] == 2
    chosen = tmp_path / "run" / f"seed{sel['seeds'][sel['meta']['best']]}"
    eval_json = json.loads((chosen / "eval.json").read_text())
    assert eval_json["returns"]["maml"]["mean"] == pytest.approx(result["returns"]["maml"])
    # every candidate was also tested on the chosen seed's tasks (reported, never chosen by):
    # the chosen one's figures are the result's own
    best = sel["meta"]["runs"][sel["meta"]["best"]]
    assert best["test_returns"] == pytest.approx(result["returns"]["maml"])
    # each method's budget is summed over its candidates
    from fastadapt.train import load_learner

    steps = [load_learner(tmp_path / "run" / f"seed{s}").env_steps for s in sel["seeds"]]
    assert result["env_steps_trained"]["maml"] == sum(steps)
    pre = [
        load_learner(tmp_path / "run" / f"seed{s}" / "baselines" / "pretrain").env_steps
        for s in sel["seeds"]
    ]
    assert result["env_steps_trained"]["pretrain (tuned lr)"] == sum(pre)
    # again with --reuse: nothing retrained, the same figures
    model = (chosen / "model.safetensors").stat().st_mtime_ns
    run_script(monkeypatch, "maml_cartpole.py", *argv, "--reuse")
    assert json.loads(out.read_text())["returns"] == result["returns"]
    assert (chosen / "model.safetensors").stat().st_mtime_ns == model


@pytest.mark.parametrize("algorithm", ["maml", "metasgd"])
def test_cartpole_benchmark_refuses_an_outer_lr_its_learner_does_not_take(
    tmp_path, monkeypatch, capsys, algorithm
):
    argv = ["--algorithm", algorithm, "--outer-lr", "0.01", "--out", str(tmp_path / "o.json")]
    with pytest.raises(SystemExit) as exit_info:
        run_script(monkeypatch, "maml_cartpole.py", *argv)
    assert exit_info.value.code == 2
    assert "--outer-lr is ProMP's" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()


def test_tabular_benchmark_trains_with_the_chosen_discount_and_seed(tmp_path, monkeypatch):
    out = tmp_path / "tab.json"
    argv = ["--settings", "2,3", "--iterations", "1,2", "--eval-tasks", "6", "--gamma", "0.7"]
    argv += ["--seed", "3", "--run-root", str(tmp_path / "runs"), "--no-progress"]
    run_script(monkeypatch, "rl2_tabular.py", *argv, "--out", str(out))
    short, long = json.loads(out.read_text())["results"]
    assert (short["n"], short["init_from"], long["n"], long["init_from"]) == (
        2,
        "scratch",
        3,
        "n=2",
    )
    for row in (short, long):
        assert {"rl2", "rl2_greedy", "psrl", "greedy", "myopic", "random"} <= row.keys()
        assert (row["gamma"], row["gae_lambda"], row["seed"]) == (0.7, 0.3, 3)
        assert row["policy"] == "transformer" and row["prev_obs_inputs"]  # its defaults
        assert row["paper"] is None  # the paper has figures for n = 10 and 25 only
    assert (short["iterations"], long["iterations"]) == (1, 2)  # one number per setting
    run = tmp_path / "runs" / "prevobs_transformer_n3"
    config = read_config(run)["config"]  # what the run itself trained with
    assert (config["gamma"], config["seed"], config["episodes_per_task"]) == (0.7, 3, 3)
    assert config["prev_obs_inputs"]
    # --no-prev-obs-inputs: the paper's inputs, in a run directory of its own
    out2 = tmp_path / "plain.json"
    argv2 = ["--settings", "2", "--iterations", "1", "--eval-tasks", "6", "--no-prev-obs-inputs"]
    argv2 += ["--run-root", str(tmp_path / "runs"), "--no-progress", "--out", str(out2)]
    run_script(monkeypatch, "rl2_tabular.py", *argv2)
    (plain,) = json.loads(out2.read_text())["results"]
    assert not plain["prev_obs_inputs"]
    assert not read_config(tmp_path / "runs" / "transformer_n2")["config"]["prev_obs_inputs"]
    # a count of iterations per setting must name every setting
    with pytest.raises(SystemExit):
        run_script(monkeypatch, "rl2_tabular.py", "--settings", "2,3", "--iterations", "1,2,3")


def test_navigation_benchmark_trains_the_chosen_inner_steps_and_reports_the_paper(
    tmp_path, monkeypatch
):
    out = tmp_path / "out.json"
    argv = ["--meta-iterations", "1", "--inner-steps", "2", "--intermediate-weight", "0.5"]
    argv += ["--run-dir", str(tmp_path / "run"), "--no-progress", "--out", str(out)]
    run_script(monkeypatch, "maml_navigation.py", *argv)
    result = json.loads(out.read_text())
    config = read_config(tmp_path / "run")["config"]
    assert config["num_inner_steps"] == 2 and config["intermediate_weight"] == 0.5
    assert config["inner_lr"] == [0.1, 0.05]  # the test protocol's schedule
    assert result["inner_steps"] == 2 and result["intermediate_weight"] == 0.5
    # the reference code's settings by default
    assert result["batch_unit"] == "steps" and config["batch_unit"] == "steps"
    assert result["hessian_subsample"] == 5 and config["hessian_subsample"] == 5
    assert result["returns"]["paper"] == [-40.41, -11.68, -3.33, -3.23]
    assert {"maml", "scratch", "pretrain"} <= result["returns"].keys()
    assert all(len(r) == 4 for r in result["returns"].values())
    assert result["seconds_per_meta_iteration"] > 0 and result["wall_s"] > 0


def test_settings_speed_script_times_each_setting(tmp_path, monkeypatch):
    out = tmp_path / "speed.json"
    run_script(monkeypatch, "navigation_settings_speed.py", "--iterations", "1", "--out", str(out))
    result = json.loads(out.read_text())
    sec, ratio = result["seconds_per_meta_iteration"], result["ratio_to_default"]
    assert set(sec) == set(ratio) and len(sec) == 5
    assert all(s > 0 for s in sec.values())
    assert ratio["episodes, Fisher every 20th (default)"] == 1.0
    parts = result["parts_s"]
    assert set(parts) == set(sec)
    assert all(0 < p["cg_s"] + p["line_search_s"] < p["outer_s"] for p in parts.values())


def test_device_speed_script_on_the_cpu_twice_gives_equal_returns(tmp_path, monkeypatch):
    out = tmp_path / "device.json"
    argv = ["--device", "cpu", "--iterations", "1", "--out", str(out)]
    run_script(monkeypatch, "device_speed.py", *argv)
    result = json.loads(out.read_text())
    sec = result["seconds_per_meta_iteration"]
    assert len(sec) == 4 and set(result["speedup"]) == set(sec)
    assert all(t["cpu"] > 0 and t["device"] > 0 for t in sec.values())
    # the same seed on the same device: the same returns
    assert set(result["max_abs_return_diff"].values()) == {0.0}
    assert result["device_name"] == "cpu"


def test_compare_learners_records_the_init(tmp_path, monkeypatch):
    out = tmp_path / "compare.json"
    argv = ["--env-steps", "1", "--init", "small-output", "--out", str(out)]
    run_script(monkeypatch, "compare_learners.py", *argv)
    result = json.loads(out.read_text())
    assert result["init"] == "small-output"
    assert [r["algorithm"] for r in result["results"]] == ["maml-trpo", "promp", "reptile"]
    assert all(r["iterations"] == 1 and len(r["returns"]) == 4 for r in result["results"])


def test_fisher_product_timing_compares_equal_products(tmp_path, monkeypatch):
    out = tmp_path / "fvp.json"
    run_script(monkeypatch, "maml_fvp.py", "--product-only", "--iterations", "2", "--out", str(out))
    speeds = json.loads(out.read_text())["product_seconds"]
    assert [(r["fisher_subsample"], r["batch_unit"]) for r in speeds] == [
        (20, "episodes"),
        (5, "steps"),
    ]
    for r in speeds:
        assert r["relative_difference"] < 1e-5  # the same product, two ways
        assert r["gauss_newton_s"] > 0 and r["speedup"] > 0
        assert r["iterations"] == 2 and r["iteration_speedup"] > 0
