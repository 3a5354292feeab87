"""Learning tests: each algorithm actually learns. Slow; run with `make test-all` (pytest -m slow)."""

import pytest

from fastadapt.config import MAMLConfig, ReptileConfig, RL2Config
from fastadapt.learners.rl2 import evaluate_rl2
from fastadapt.train import make_learner

pytestmark = pytest.mark.slow


def test_maml_trpo_learns_to_adapt_on_navigation():
    learner = make_learner("maml", MAMLConfig(seed=0))
    rows = [learner.step() for _ in range(40)]
    late = [r["return/post_adapt"] for r in rows[-5:]]
    assert sum(late) / 5 > -25  # starts near -90
    assert all(r["return/post_adapt"] > r["return/pre_adapt"] for r in rows[-5:])


def test_reptile_improves_on_navigation():
    learner = make_learner(
        "reptile", ReptileConfig(seed=0, meta_batch_size=10, episodes_per_task=10)
    )
    first = learner.step()["return/pre_adapt"]
    rows = [learner.step() for _ in range(30)]
    assert sum(r["return/pre_adapt"] for r in rows[-5:]) / 5 > first + 10  # measured: +18


def test_rl2_beats_random_on_bandits():
    cfg = RL2Config(
        env="Bandit-v0", episodes_per_task=10, lr=1e-3, entropy_coef=0.003, meta_batch_size=256
    )
    learner = make_learner("rl2", cfg)
    for _ in range(150):
        learner.step()
    assert evaluate_rl2(learner, num_tasks=500)["total_reward"]["mean"] > 5.5  # random: 5.0
