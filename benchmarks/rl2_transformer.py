"""RL²'s Transformer policy while sampling: one step from the key-value cache vs recomputing the
trial's whole prefix at every step (what sampling did before the cache).

    python benchmarks/rl2_transformer.py --out runs/bench_rl2_transformer.json

For trials of L steps (the tabular MDP benchmark's n = 10 and n = 25: 100 and 250 steps), 128
trials at once, a 2-layer Transformer of width 128: the policy's time to produce all L steps' action
distributions and values both ways (no environment), the largest difference between the two, and
a whole sampling of trials (``collect_trials`` on TabularMDP-v0) with the Transformer and with the
GRU of the same width. Times are medians. Writes ``{"results": [{"trial_steps", "cached_s",
"recompute_s", "speedup", "max_abs_diff", "collect_transformer_s", "collect_gru_s"}, ...]}``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_time, parser, print_table, write_json  # noqa: E402

from fastadapt.learners.rl2 import collect_trials  # noqa: E402
from fastadapt.sequence_policies import SequencePolicy  # noqa: E402
from fastadapt.tasks import make_family, sample_tasks  # noqa: E402

TRIALS, WIDTH = 128, 128


@torch.no_grad()
def cached(pol: SequencePolicy, inputs: torch.Tensor) -> torch.Tensor:
    state = pol.initial_state(inputs.shape[0])
    values = []
    for t in range(inputs.shape[1]):
        _, v, state = pol.step(inputs[:, t], state)
        values.append(v)
    return torch.stack(values, 1)


@torch.no_grad()
def recompute(pol: SequencePolicy, inputs: torch.Tensor) -> torch.Tensor:
    return torch.stack([pol(inputs[:, : t + 1])[1][:, t] for t in range(inputs.shape[1])], 1)


def measure(episodes: int, repeats: int) -> dict:
    family = make_family("TabularMDP-v0")
    obs_dim, actions = family.observation_space.shape[0], int(family.action_space.n)
    L = episodes * family.horizon
    torch.manual_seed(0)
    pols = {
        kind: SequencePolicy(obs_dim, actions, True, kind, WIDTH, 2, 4, max_len=L).eval()
        for kind in ("transformer", "gru")
    }
    inputs = torch.randn(TRIALS, L, pols["gru"].input_dim)
    t_cached, v_cached = median_time(lambda: cached(pols["transformer"], inputs), repeats)
    t_full, v_full = median_time(
        lambda: recompute(pols["transformer"], inputs), max(1, repeats // 3)
    )
    tasks = sample_tasks(family, TRIALS, seed=0)
    collect = {
        kind: median_time(lambda p=p: collect_trials(family, p, tasks, episodes, seed=1), repeats)[
            0
        ]
        for kind, p in pols.items()
    }
    return {
        "trial_steps": L,
        "trials": TRIALS,
        "width": WIDTH,
        "cached_s": t_cached,
        "recompute_s": t_full,
        "speedup": t_full / t_cached,
        "max_abs_diff": float((v_cached - v_full).abs().max()),
        "collect_transformer_s": collect["transformer"],
        "collect_gru_s": collect["gru"],
    }


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--episodes", default="10,25", help="trial lengths in episodes of 10 steps")
    args = p.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    results = [measure(int(n), args.repeats) for n in args.episodes.split(",")]
    print_table(
        [
            "trial steps",
            "cached s",
            "recompute s",
            "speedup",
            "max diff",
            "collect (TF) s",
            "collect (GRU) s",
        ],
        [
            [
                r["trial_steps"],
                r["cached_s"],
                r["recompute_s"],
                r["speedup"],
                r["max_abs_diff"],
                r["collect_transformer_s"],
                r["collect_gru_s"],
            ]
            for r in results
        ],
    )
    write_json(args.out, {"results": results})


if __name__ == "__main__":
    main()
