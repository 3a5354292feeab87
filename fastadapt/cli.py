"""The ``fastadapt`` command line.

    fastadapt train maml --env Navigation2D-v0 --meta-iterations 500 --seed 0 --run-dir runs/nav
    fastadapt train metasgd --env CartPoleDynamics-v0 --run-dir runs/cp
    fastadapt train --resume runs/nav
    fastadapt evaluate runs/nav            # eval.json + adaptation.png (vs scratch and pretrain)
    fastadapt adapt runs/nav --task '{"goal_x": 0.3, "goal_y": -0.2}' --steps 3
    fastadapt select runs/cp_s0 runs/cp_s1 runs/cp_s2   # the best run on training-split tasks
    fastadapt report runs/nav [runs/other ...] [--out DIR]
    fastadapt list
    fastadapt demo                         # meta-train, evaluate, write runs/demo/report.md

Every option has help text: ``fastadapt train maml --help``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Literal

import tyro
import yaml

from fastadapt.config import EvalConfig, MAMLConfig, config_from_dict
from fastadapt.errors import ConfigError, FastAdaptError

FLAT = (tyro.conf.OmitArgPrefixes,)


def _load_config_file(cls: type, path: Path):
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    if isinstance(data, dict) and "config" in data and "algorithm" in data:
        data = data["config"]  # a run's config.yaml
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of option: value")
    return config_from_dict(cls, data)


def _pop_option(argv: list[str], name: str) -> str | None:
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            value = argv[i + 1]
            del argv[i : i + 2]
            return value
        if a.startswith(name + "="):
            del argv[i]
            return a.split("=", 1)[1]
    return None


def _learner_options_in(argv: list[str], cfg_cls: type) -> list[str]:
    """The flags of ``cfg_cls``'s fields that ``argv`` names (``--x``, ``--x=v``, ``--no-x``,
    with ``-`` or ``_`` between words, as the parser takes them)."""
    named = set()
    for a in argv:
        if a.startswith("--"):
            name = a[2:].split("=", 1)[0].replace("_", "-")
            named.add(name.removeprefix("no-"))
            named.add(name)
    flags = ("--" + f.name.replace("_", "-") for f in dataclasses.fields(cfg_cls))
    return [flag for flag in flags if flag[2:] in named]


def cmd_train(argv: list[str]) -> None:
    from fastadapt.train import LEARNERS, algorithm_names, make_learner, resume_run, train

    if argv and argv[0] == "--resume":
        rest = list(argv[1:])
        device = _pop_option(rest, "--device") or ""
        if len(rest) != 1:
            raise ConfigError("usage: fastadapt train --resume RUN_DIR [--device cpu|cuda[:N]]")
        print(f"resumed and finished: {resume_run(rest[0], device=device)}")
        return
    if not argv or argv[0] in ("-h", "--help"):
        print(
            "usage: fastadapt train {" + ",".join(algorithm_names()) + "} [OPTIONS]\n"
            "       fastadapt train --resume RUN_DIR [--device cpu|cuda[:N]]"
        )
        return
    algorithm, rest = argv[0], list(argv[1:])
    if algorithm not in LEARNERS:
        raise ConfigError(f"unknown algorithm {algorithm!r}; known: {', '.join(algorithm_names())}")
    cfg_cls = LEARNERS[algorithm][0]
    config_file = _pop_option(rest, "--config-file")
    given = _learner_options_in(rest, cfg_cls)
    default = _load_config_file(cfg_cls, Path(config_file)) if config_file else cfg_cls()

    def run(
        config: MAMLConfig = default,
        run_dir: Path = Path(f"runs/{algorithm}"),
        resume: bool = False,
        overwrite: bool = False,
        progress: bool = True,
        track: bool = False,
    ) -> None:
        """Meta-train. Options may also come from --config-file FILE.yaml (unknown keys refused).

        Args:
            config: learner options.
            run_dir: the run directory (config, metrics, TensorBoard, checkpoints, model).
            resume: continue the run in run_dir from its newest checkpoint, with its own config
                (learner options are refused, except --device).
            overwrite: replace a run that run_dir already holds.
            progress: show a progress bar.
            track: also log to Weights & Biases (needs `pip install wandb`; off by default).
        """
        if resume:
            refused = [f for f in given if f != "--device"] + (
                ["--config-file"] if config_file else []
            )
            if refused:
                raise ConfigError(
                    "--resume continues the run with its saved config; drop " + ", ".join(refused)
                )
            device = config.device if "--device" in given else ""
            path = resume_run(run_dir, progress=progress, track=track, device=device)
            print(f"resumed and finished: {path}")
            return
        learner = make_learner(algorithm, config)
        path = train(learner, run_dir, overwrite=overwrite, progress=progress, track=track)
        print(f"trained {learner.name} on {config.env}: {path}")

    run.__annotations__["config"] = cfg_cls  # the algorithm's own config class
    tyro.cli(run, args=rest, config=FLAT, prog=f"fastadapt train {algorithm}")


def eval_dirs(path: Path) -> tuple[Path, Path]:
    """Where ``fastadapt evaluate PATH`` writes its results, and the run directory whose
    ``baselines/`` it trains or reuses: both ``PATH`` for a run directory; for a checkpoint file,
    ``<file name>_eval/`` beside it, and the run directory that holds it (the file's folder, or
    the folder above its ``checkpoints/``), else that same ``_eval`` folder."""
    from fastadapt.runs import run_dir_of

    path = Path(path)
    if not path.is_file():
        return path, path
    out = path.parent / f"{path.stem}_eval"
    return out, run_dir_of(path) or out


def cmd_evaluate(argv: list[str]) -> None:
    def run(
        run_dir: tyro.conf.Positional[Path],
        eval: EvalConfig = EvalConfig(),  # noqa: B008
        progress: bool = True,
        device: str = "",
    ) -> None:
        """Evaluate a run (its final model) or one checkpoint file on held-out tasks against the
        baselines; writes eval.json and adaptation.png into the run directory (for a checkpoint
        file, into ``<checkpoint name>_eval/`` beside it) and prints the table.

        Args:
            run_dir: a trained run (or a checkpoint file).
            eval: the evaluation protocol.
            progress: show progress bars.
            device: cpu or cuda[:N]; empty means the run's own (the CPU where that GPU is missing).
        """
        from fastadapt.evaluation import evaluate_learner, format_table, write_eval
        from fastadapt.learners.rl2 import evaluate_rl2
        from fastadapt.train import load_learner

        out_dir, baseline_dir = eval_dirs(run_dir)
        learner = load_learner(run_dir, device)
        if learner.name == "rl2":  # adapts within a trial: returns per episode, no gradient steps
            eval.validate()  # (evaluate_learner validates its own)
            if eval.tune_later_lr:
                raise ConfigError("--tune-later-lr tunes gradient steps; RL² adapts without them")
            result = evaluate_rl2(learner, eval.num_tasks, eval.seed, deterministic=eval.greedy)
        elif eval.greedy:
            raise ConfigError(
                f"--greedy applies to RL² runs; {learner.name} adapts by gradient steps on "
                "sampled episodes"
            )
        else:
            result = evaluate_learner(learner, eval, baseline_dir, progress)
        path, png = write_eval(result, out_dir)
        print(format_table(result))
        print(f"wrote {path} and {png}")

    tyro.cli(run, args=argv, config=FLAT, prog="fastadapt evaluate")


def cmd_adapt(argv: list[str]) -> None:
    def run(
        run_dir: tyro.conf.Positional[Path],
        task: str = "",
        steps: int = 3,
        episodes: int | None = None,
        lr: tuple[float, ...] = (),
        seed: int = 0,
        batch_unit: Literal["", "episodes", "steps"] = "",
        device: str = "",
    ) -> None:
        """Adapt a trained agent to one task and print its return before and after each step (an
        RL² run: play one trial on the task and print each episode's return).

        Args:
            run_dir: a trained run (or a checkpoint file).
            task: the task as a JSON object of its fields; empty means the family's default task.
            steps: adaptation steps (not for RL², which adapts within the trial).
            episodes: episodes per step (default 20); for RL², the trial's episodes (default: the
                trial length it was trained on).
            lr: inner learning rate(s); empty means the run's own.
            seed: sampling seed.
            batch_unit: 'episodes' (exactly that many per step) or 'steps' (whole episodes up to
                episodes x horizon steps per step); empty means the unit the run trained with.
            device: cpu or cuda[:N]; empty means the run's own (the CPU where that GPU is missing).
        """
        import gymnasium as gym

        from fastadapt.agent import Agent, TrialAgent
        from fastadapt.train import load_learner

        learner = load_learner(run_dir, device)
        family = learner.family
        if task:
            try:
                target = json.loads(task)
            except json.JSONDecodeError as e:
                raise ConfigError(f"--task is not valid JSON ({e}): {task!r}") from None
        else:
            target = family.default_task()
        if learner.name == "rl2":  # no gradient steps: one trial, the policy adapts as it goes
            env = gym.make(f"fastadapt/{family.id}", task=family.validate_task(target))
            returns = TrialAgent(learner, seed).play(env, episodes, seed=seed)
            for k, r in enumerate(returns):
                print(f"episode {k + 1} of the trial: return {r:.3f}")
            print(f"total over the trial: {sum(returns):.3f}")
            return
        returns = Agent(learner).adapt(
            target, steps=steps, episodes=episodes or 20, lr=lr or None, seed=seed, unit=batch_unit
        )
        for k, r in enumerate(returns):
            print(f"after {k} step{'s' if k != 1 else ''}: average return {r:.3f}")

    tyro.cli(run, args=argv, config=FLAT, prog="fastadapt adapt")


def cmd_select(argv: list[str]) -> None:
    def run(
        run_dirs: tyro.conf.Positional[tuple[Path, ...]],
        num_tasks: int = 40,
        num_steps: int = 3,
        episodes_per_step: int = 20,
        inner_lr: tuple[float, ...] = (),
        task_seed: int | None = None,
        tune_lr: bool = False,
        out: Path | None = None,
        device: str = "",
    ) -> None:
        """Pick the best of several trained runs (seeds of one setting, say) by their mean return
        after 1..num_steps adaptation steps on validation tasks drawn from the *training* split,
        the same tasks for every run: the choice never sees a held-out test task. Prints a table
        and the chosen run; evaluate that one with ``fastadapt evaluate``.

        Args:
            run_dirs: finished runs of one task family (or checkpoint files).
            num_tasks: validation tasks (from a training-split stream that meta-training and lr
                tuning never draw from).
            num_steps: adaptation steps scored (the score is the mean over steps 1..num_steps).
            episodes_per_step: episodes per task before each step.
            inner_lr: the rates of the steps (the last repeats); empty means each run's own test
                schedule (its first inner rate, then half of it).
            task_seed: seed of the validation tasks; empty means the first run's seed.
            tune_lr: tune each run's rates step by step on training tasks first, as the
                evaluation tunes its baselines' (for plain multi-task policies).
            out: also write the scores as JSON here.
            device: cpu or cuda[:N]; empty means each run's own.
        """
        from fastadapt.evaluation import select_runs

        cfg = EvalConfig(
            num_steps=num_steps, episodes_per_step=episodes_per_step, inner_lr=inner_lr
        )
        result = select_runs(run_dirs, cfg, num_tasks, task_seed, tune_lr, device)
        head = "| run | seed | " + " | ".join(
            f"{k} step{'s' if k != 1 else ''}" for k in range(num_steps + 1)
        )
        print(head + " | score |")
        print("|---" * (num_steps + 4) + "|")
        for i, r in enumerate(result["runs"]):
            mark = " (best)" if i == result["best"] else ""
            cells = " | ".join(f"{x:.2f}" for x in r["returns"])
            print(f"| {r['run_dir']}{mark} | {r['seed']} | {cells} | {r['score']:.2f} |")
        print(f"best: {result['runs'][result['best']]['run_dir']}")
        if out is not None:
            from fastadapt.runs import atomic_write_bytes

            atomic_write_bytes(Path(out), json.dumps(result, indent=2).encode())
            print(f"wrote {out}")

    tyro.cli(run, args=argv, config=FLAT, prog="fastadapt select")


def cmd_report(argv: list[str]) -> None:
    def run(run_dirs: tyro.conf.Positional[tuple[Path, ...]], out: Path | None = None) -> None:
        """Write report.md with training and adaptation plots for one or several runs.

        Args:
            run_dirs: run directories (several are compared side by side).
            out: output directory (default: the run's own, or ./report for several).
        """
        from fastadapt.report import write_report

        print(f"wrote {write_report(run_dirs, out)}")

    tyro.cli(run, args=argv, config=FLAT, prog="fastadapt report")


def cmd_list(argv: list[str]) -> None:
    from fastadapt.tasks import FAMILIES
    from fastadapt.train import algorithm_names

    print("task families (gymnasium ids fastadapt/<id>):")
    for name, cls in sorted(FAMILIES.items()):
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"  {name:22s} {doc}")
    print("algorithms:")
    for name in algorithm_names():
        print(f"  {name}")


@dataclasses.dataclass
class DemoConfig:
    """The demo: MAML-TRPO on Navigation2D-v0, evaluation against scratch and pretrain, a report."""

    run_dir: Path = Path("runs/demo")
    """Where the run, its baselines, eval.json and report.md go (replaced if present)."""
    meta_iterations: int = 200
    """Meta-iterations (the default finishes in a few minutes on 2 cores)."""
    seed: int = 0
    """Seed."""
    progress: bool = True
    """Show progress bars."""


def cmd_demo(argv: list[str]) -> None:
    cfg = tyro.cli(DemoConfig, args=argv, config=FLAT, prog="fastadapt demo")
    from fastadapt.evaluation import evaluate_learner, format_table, write_eval
    from fastadapt.report import write_report
    from fastadapt.train import make_learner, train

    mcfg = MAMLConfig(
        env="Navigation2D-v0",
        meta_iterations=cfg.meta_iterations,
        seed=cfg.seed,
        checkpoint_every=50,
    )
    learner = make_learner("maml", mcfg)
    print(f"[1/3] meta-training MAML-TRPO on {mcfg.env} ({cfg.meta_iterations} iterations)")
    train(learner, cfg.run_dir, overwrite=True, progress=cfg.progress)
    print("[2/3] evaluating on 40 held-out tasks vs scratch and pretrain (pretraining first)")
    result = evaluate_learner(learner, EvalConfig(), cfg.run_dir, cfg.progress)
    write_eval(result, cfg.run_dir)
    report = write_report([cfg.run_dir])
    print("[3/3] report written")
    print()
    print(format_table(result))
    print(f"\nreport: {report}")


COMMANDS = {
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "adapt": cmd_adapt,
    "select": cmd_select,
    "report": cmd_report,
    "list": cmd_list,
    "demo": cmd_demo,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fastadapt`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    cmd = argv[0]
    if cmd not in COMMANDS:
        print(
            f"fastadapt: unknown command {cmd!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr
        )
        return 2
    try:
        COMMANDS[cmd](argv[1:])
    except FastAdaptError as e:
        print(f"fastadapt: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
