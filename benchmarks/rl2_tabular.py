"""RL² on random tabular MDPs, the RL² paper's Table 2 settings, beside posterior sampling (PSRL)
and random play computed on the same held-out MDPs.

    python benchmarks/rl2_tabular.py --out runs/bench_rl2_tabular.json [--iterations 300]

For each n (episodes of 10 steps per trial): train RL² (GRU), report the mean total reward over the
n episodes on 500 held-out MDPs. Writes {"results": [{"n", "rl2", "paper", "psrl", "random", ...}]}.
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parser, print_table, train_rl2_row, write_json  # noqa: E402

from fastadapt.bandit_baselines import mdp_baseline  # noqa: E402
from fastadapt.config import RL2Config  # noqa: E402

PAPER = {10: 156.2, 25: 445.7}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--settings", default="10,25")
    p.add_argument("--eval-tasks", type=int, default=500)
    p.add_argument("--run-root", type=Path, default=Path("runs/bench_rl2_tabular"))
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    results = []
    for n in (int(x) for x in args.settings.split(",")):
        cfg = RL2Config(
            env="TabularMDP-v0",
            episodes_per_task=n,
            meta_batch_size=128,
            lr=1e-3,
            entropy_coef=0.003,
            gae_lambda=0.3,
            meta_iterations=args.iterations,
            checkpoint_every=100,
        )
        row = {"n": n}
        row |= train_rl2_row(
            cfg,
            args.run_root / f"n{n}",
            args.eval_tasks,
            PAPER.get(n),
            {name: partial(mdp_baseline, name, seed=1) for name in ("psrl", "random")},
            not args.no_progress,
        )
        results.append(row)
        print(
            f"n={n}: rl2 {row['rl2']:.1f} (paper {row['paper']}), psrl {row['psrl']:.1f}, "
            f"random {row['random']:.1f}",
            flush=True,
        )
    print_table(
        ["n", "RL² (ours)", "RL² (paper)", "PSRL", "random", "train s"],
        [[r["n"], r["rl2"], r["paper"], r["psrl"], r["random"], r["train_s"]] for r in results],
    )
    write_json(args.out, {"results": results})


if __name__ == "__main__":
    main()
