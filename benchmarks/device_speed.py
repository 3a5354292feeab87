"""Seconds per meta-iteration on the CPU and on a CUDA GPU, side by side, and how far apart the two
devices' parameters end up.

    python benchmarks/device_speed.py --out F.json [--iterations 15] [--device cuda]

Settings: MAML-TRPO on Navigation2D-v0 with the library's defaults, with the navigation benchmark's
(the steps unit, inner Hessians on every 5th step), and with the defaults at four times the tasks
per meta-batch (80); RL² (GRU) on Bandit-v0 with its defaults. For each setting one learner per
device, the same seed, stepped in turn so the machine's drift hits both alike; the median over
iterations 4 onwards. The action noise is drawn on the CPU on both devices, so from the same
parameters the two learners see the same episodes up to rounding. After each iteration the
device learner takes the CPU learner's state, as a checkpoint holds it (MAML-TRPO's outer step
turns rounding differences into parameter differences of ~1e-3, so whole runs drift apart;
tests/test_device.py says why), and ``max_abs_return_diff`` is the largest difference of an
iteration's pre- or post-adaptation return between the two. Writes
{"seconds_per_meta_iteration": {setting: {"cpu": s, "device": s}}, "speedup": {setting: cpu s /
device s}, "max_abs_return_diff": {setting: d}, "device_name": name}.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import medians_in_turn, parser, print_table, write_json  # noqa: E402

from fastadapt.config import MAMLConfig, RL2Config  # noqa: E402
from fastadapt.runtime import configure_cpu  # noqa: E402
from fastadapt.train import make_learner  # noqa: E402

SETTINGS = {
    "MAML nav, library defaults": ("maml", MAMLConfig, {}),
    "MAML nav, benchmark settings": (
        "maml",
        MAMLConfig,
        {"batch_unit": "steps", "hessian_subsample": 5},
    ),
    "MAML nav, 80 tasks per batch": ("maml", MAMLConfig, {"meta_batch_size": 80}),
    "RL2 GRU bandits": ("rl2", RL2Config, {"env": "Bandit-v0"}),
}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=15)
    p.add_argument(
        "--device", default="cuda", help="the device to compare with the CPU (cpu: a smoke test)"
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    configure_cpu()
    devices = {"cpu": "cpu", "device": args.device}
    learners = {
        (name, label): make_learner(alg, cls(seed=args.seed, device=dev, **kw))
        for name, (alg, cls, kw) in SETTINGS.items()
        for label, dev in devices.items()
    }
    last: dict[str, dict[str, float]] = {}  # each setting's CPU learner's latest metrics
    diff = dict.fromkeys(SETTINGS, 0.0)

    def cpu_step(name: str) -> float:
        last[name] = learners[(name, "cpu")].step()
        return last[name]["time/iteration_s"]

    def device_step(name: str) -> float:
        cpu, dev = learners[(name, "cpu")], learners[(name, "device")]
        m = dev.step()
        for key in ("return/pre_adapt", "return/post_adapt"):
            diff[name] = max(diff[name], abs(m[key] - last[name][key]))
        dev.load_state(cpu.state_tensors(), cpu.state_meta())
        return m["time/iteration_s"]

    steps = {}
    for name in SETTINGS:  # the CPU learner first: the device step compares with its metrics
        steps[(name, "cpu")] = lambda n=name: cpu_step(n)
        steps[(name, "device")] = lambda n=name: device_step(n)
    sec = medians_in_turn(steps, args.iterations, skip=3)
    table = {name: {label: sec[(name, label)] for label in devices} for name in SETTINGS}
    speedup = {name: t["cpu"] / t["device"] for name, t in table.items()}
    print_table(
        ["setting", "cpu s/it", f"{args.device} s/it", "speedup", "max |return diff|"],
        [[n, t["cpu"], t["device"], speedup[n], f"{diff[n]:.1e}"] for n, t in table.items()],
    )
    dev = torch.device(args.device)
    write_json(
        args.out,
        {
            "iterations": args.iterations,
            "device": args.device,
            "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            "seconds_per_meta_iteration": table,
            "speedup": speedup,
            "max_abs_return_diff": diff,
        },
    )


if __name__ == "__main__":
    main()
