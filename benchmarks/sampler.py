"""Closed-loop sampling speed: the batched sampler vs the same work through Gymnasium's SyncVectorEnv.

    python benchmarks/sampler.py --out runs/bench_sampler.json

Both paths run the same sampler code with the same policy (one parameter set per task, batched); the
second steps each task's Gymnasium view (``gym.make("fastadapt/<Id>")``) inside a ``SyncVectorEnv``.
Prints a table and writes ``{"results": [{"env", "env_steps_per_s", "gym_vector_env_steps_per_s",
"speedup", ...}]}``. Times are medians.
"""

from __future__ import annotations

import sys
from pathlib import Path

import gymnasium as gym
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_time, parser, print_table, write_json  # noqa: E402

from fastadapt.policies import expand_params, policy_for_family  # noqa: E402
from fastadapt.sampling import collect_episodes  # noqa: E402
from fastadapt.tasks import GymTaskFamily, make_family, sample_tasks, task_to_dict  # noqa: E402


def measure(env_id: str, tasks_n: int, episodes: int, repeats: int, gym_repeats: int) -> dict:
    family = make_family(env_id)
    policy = policy_for_family(env_id, family.observation_space, family.action_space)
    params = expand_params(policy.init_params(torch.Generator().manual_seed(0)), tasks_n)
    tasks = sample_tasks(family, tasks_n, seed=0)
    gym_family = GymTaskFamily(
        f"gym-view:{env_id}",
        lambda task: gym.make(f"fastadapt/{env_id}", task=task),
        lambda n, rng: family.sample_tasks(n, rng),
        default_task=family.default_task(),
        horizon=family.horizon,
    )

    def run(fam):
        return collect_episodes(fam, policy, params, tasks, episodes, seed=1)

    t_fast, ep = median_time(lambda: run(family), repeats)
    t_gym, ep_gym = median_time(lambda: run(gym_family), gym_repeats)
    steps, steps_gym = ep.num_steps, ep_gym.num_steps
    return {
        "env": env_id,
        "tasks": tasks_n,
        "episodes_per_task": episodes,
        "horizon": family.horizon,
        "env_steps": steps,
        "seconds": t_fast,
        "env_steps_per_s": steps / t_fast,
        "gym_vector_env_steps": steps_gym,
        "gym_vector_seconds": t_gym,
        "gym_vector_env_steps_per_s": steps_gym / t_gym,
        "speedup": (steps / t_fast) / (steps_gym / t_gym),
        "example_task": task_to_dict(tasks[0]),
    }


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--gym-repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    results = [
        measure("Navigation2D-v0", 40, 20, args.repeats, args.gym_repeats),
        measure("CartPoleDynamics-v0", 40, 20, args.repeats, args.gym_repeats),
    ]
    print_table(
        ["env", "env steps", "batched steps/s", "SyncVectorEnv steps/s", "speedup"],
        [
            [
                r["env"],
                r["env_steps"],
                r["env_steps_per_s"],
                r["gym_vector_env_steps_per_s"],
                r["speedup"],
            ]
            for r in results
        ],
    )
    write_json(args.out, {"results": results})


if __name__ == "__main__":
    main()
