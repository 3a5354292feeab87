"""RL² on random tabular MDPs, the RL² paper's Table 2 settings, beside posterior sampling (PSRL),
greedy planning on the posterior mean MDP, a myopic Bayesian rule (the action whose posterior mean
reward is highest in the current state) and random play, computed on the same held-out MDPs.

    python benchmarks/rl2_tabular.py --out runs/bench_rl2_tabular.json

For each n (episodes of 10 steps per trial): train RL², report the mean total reward over the n
episodes on 500 held-out MDPs (`rl2` sampling its actions, `rl2_greedy` taking the most likely
one). Writes {"results": [{"n", "rl2", "rl2_greedy", "paper", "psrl", "greedy", "myopic",
"random", ...}]}.

The defaults are the recipe that reaches the paper's figures on this machine: the causal
Transformer (`--policy`; 2 layers of width 128) whose input at each step also holds the
observation the previous action was taken in (`--prev-obs-inputs`, on by default here: one
position then holds a whole transition), discount 0.7 over the trial (`--gamma`; 0.99 learns the
per-state reward memory far more slowly), 400 iterations at n = 10, then 300 at n = 25 starting
from the n = 10 model (about an hour with one thread).

A longer setting starts from the model of the previous, shorter one when this run trained it
(`init_from`, a curriculum over trial length; the paper trained each from scratch, with far more
samples). `--from-scratch` turns this off.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    print_table,
    rl2_parser,
    rl2_run_name,
    sequence_model,
    train_rl2_row,
    write_json,
)

from fastadapt.bandit_baselines import mdp_baseline  # noqa: E402
from fastadapt.config import RL2Config  # noqa: E402

PAPER = {10: 156.2, 25: 445.7}
TABLE = {  # JSON key: column heading
    "n": "n",
    "rl2": "RL² (ours)",
    "rl2_greedy": "RL² greedy",
    "paper": "RL² (paper)",
    "psrl": "PSRL",
    "greedy": "greedy",
    "myopic": "myopic",
    "random": "random",
    "train_s": "train s",
    "init_from": "start",
}


def main() -> None:
    p = rl2_parser(
        __doc__.splitlines()[0], 500, "runs/bench_rl2_tabular", policy="transformer", prev_obs=True
    )
    p.add_argument(
        "--iterations",
        default=None,
        help="RL² iterations per setting: one number for every setting, or one per setting "
        "(comma-separated, in the order of --settings); default 400 for the first setting, "
        "300 for each later one",
    )
    p.add_argument("--settings", default="10,25")
    p.add_argument("--gamma", type=float, default=0.7, help="discount over the trial")
    p.add_argument("--gae-lambda", type=float, default=0.3, help="GAE lambda over the trial")
    p.add_argument(
        "--seed", type=int, default=0, help="seeds training and the held-out MDPs (and baselines)"
    )
    args = p.parse_args()
    settings = [int(x) for x in args.settings.split(",")]
    if args.iterations is None:
        iterations = [400] + [300] * (len(settings) - 1)
    else:
        iterations = [int(x) for x in args.iterations.split(",")]
    if len(iterations) == 1:
        iterations *= len(settings)
    if len(iterations) != len(settings):
        p.error(f"--iterations gives {len(iterations)} numbers for {len(settings)} settings")
    results = []
    trained: set[Path] = set()  # runs trained anew here: what starts from them is never reused
    previous: tuple[int, Path] | None = None  # (n, run directory) of the last setting
    for n, n_iterations in zip(settings, iterations, strict=True):
        shorter = previous is not None and previous[0] < n and not args.from_scratch
        start = (f"n={previous[0]}", previous[1]) if shorter else None
        run_dir = args.run_root / rl2_run_name(args, f"n{n}")
        cfg = RL2Config(
            env="TabularMDP-v0",
            episodes_per_task=n,
            meta_batch_size=128,
            lr=1e-3,
            entropy_coef=0.03,
            gamma=args.gamma,
            gae_lambda=args.gae_lambda,
            meta_iterations=n_iterations,
            checkpoint_every=100,
            seed=args.seed,
        )
        row = {"n": n}
        row |= train_rl2_row(
            replace(cfg, **sequence_model(args)),
            run_dir,
            args.eval_tasks,
            PAPER.get(n),
            {
                name: partial(mdp_baseline, name, seed=1)
                for name in ("psrl", "greedy", "myopic", "random")
            },
            not args.no_progress,
            start,
            args.evaluate_only,
            args.reuse,
            trained,
        )
        results.append(row)
        previous = (n, run_dir)
        print(
            f"n={n}: rl2 {row['rl2']:.1f} (paper {row['paper']}), psrl {row['psrl']:.1f}, "
            f"random {row['random']:.1f}",
            flush=True,
        )
    print_table(list(TABLE.values()), [[r[c] for c in TABLE] for r in results])
    write_json(args.out, {"results": results})


if __name__ == "__main__":
    main()
