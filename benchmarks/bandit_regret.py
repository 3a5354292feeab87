"""Where an RL² bandit policy loses reward: regret per window of pulls beside tuned UCB1 and Thompson
sampling, on the same held-out bandits.

    python benchmarks/bandit_regret.py runs/bench_rl2_bandits/k5_n100_fine --out runs/bench_bandit_regret.json

For each RL² run (trained on Bandit-v0) and the baselines: the total reward over the run's trial
length (the same bandits and seeds as the RL² benchmark's `rl2` figure), the expected regret
(best arm's probability minus the pulled arm's) summed over each window of `--window` pulls, and
how often the best arm is pulled in the last `--late` pulls. `--greedy`: RL² takes its most likely
action (the benchmark's `rl2_greedy`). Writes ``{"results": [{"method",
"total", "regret_by_window", "best_arm_late"}, ...]}``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parser, print_table, ucb1_constant, write_json  # noqa: E402

from fastadapt.bandit_baselines import bandit_play  # noqa: E402
from fastadapt.learners.rl2 import evaluation_trials  # noqa: E402
from fastadapt.train import load_learner  # noqa: E402


def summary(method: str, p: np.ndarray, arms: np.ndarray, rewards: np.ndarray, args) -> dict:
    """Totals and regret of one method's pulls ``arms [tasks, pulls]`` on arm probabilities ``p``."""
    rows = np.arange(len(p))[:, None]
    regret = (p.max(1, keepdims=True) - p[rows, arms]).mean(0)
    best = p[rows, arms] == p.max(1, keepdims=True)
    return {
        "method": method,
        "total": float(rewards.sum(1).mean()),
        "regret_by_window": [
            float(regret[i : i + args.window].sum()) for i in range(0, len(regret), args.window)
        ],
        "best_arm_late": float(best[:, -args.late :].mean()),
    }


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="RL² runs trained on Bandit-v0")
    p.add_argument("--tasks", type=int, default=10000, help="held-out bandits")
    p.add_argument("--window", type=int, default=10, help="pulls per regret window")
    p.add_argument("--late", type=int, default=20, help="the last pulls best_arm_late counts")
    p.add_argument("--greedy", action="store_true", help="RL² takes its most likely action")
    args = p.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    learners = [load_learner(run) for run in args.runs]
    for run, learner in zip(args.runs, learners, strict=True):
        if learner.config.env != "Bandit-v0":
            raise SystemExit(f"{run} was trained on {learner.config.env}, not Bandit-v0")
    if len({learner.config.episodes_per_task for learner in learners}) > 1:
        raise SystemExit("the runs play trials of different lengths: compare one n at a time")
    results, baselines_of = [], set()
    for run, learner in zip(args.runs, learners, strict=True):
        family, n = learner.family, learner.config.episodes_per_task
        tasks, trials = evaluation_trials(learner, args.tasks, deterministic=args.greedy)
        probs = np.array([t.arm_probs for t in tasks])
        arms, rewards = trials.actions.numpy(), trials.rewards.numpy()
        label = f"rl2{' greedy' if args.greedy else ''} {run.parent.name}/{run.name}"
        results.append(summary(label, probs, arms, rewards, args))
        if (family.k, n, learner.config.seed) in baselines_of:
            continue
        baselines_of.add((family.k, n, learner.config.seed))
        c = ucb1_constant(family.k, n)
        for base, label, kw in (
            ("ucb1", f"ucb1 c={c} (k={family.k})", {"ucb_c": c}),
            ("thompson", f"thompson (k={family.k})", {}),
        ):
            played = bandit_play(base, family, tasks, n, seed=1, **kw)
            results.append(summary(label, probs, *played, args))
    windows = len(results[0]["regret_by_window"])
    print_table(
        [
            "method",
            "total",
            *(f"regret {i * args.window + 1}-{(i + 1) * args.window}" for i in range(windows)),
            f"best arm, last {args.late}",
        ],
        [[r["method"], r["total"], *r["regret_by_window"], r["best_arm_late"]] for r in results],
    )
    write_json(args.out, {"results": results})


if __name__ == "__main__":
    main()
