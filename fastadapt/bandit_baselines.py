"""Classical baselines for the RL² families, vectorized over many tasks at once.

Bandits: random, UCB1 (Auer et al. 2002) and Thompson sampling with a uniform Beta prior.
Tabular MDPs: random, and posterior sampling (PSRL, Osband et al. 2013) with the families' own priors
(mean rewards N(1, 1) with unit observation noise, transitions Dirichlet(1)), solved each episode by
finite-horizon value iteration. All return the total reward per trial, ``[tasks]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fastadapt.tasks.bandit import Bandit, BanditTask, TabularMDP, TabularMDPTask


def bandit_baseline(
    name: str, family: Bandit, tasks: Sequence[BanditTask], pulls: int, seed: int
) -> np.ndarray:
    """Total reward over ``pulls`` pulls of ``random``, ``ucb1`` or ``thompson`` on each task."""
    rng = np.random.default_rng(seed)
    p = np.array([t.arm_probs for t in tasks])
    n, k = p.shape
    counts, wins = np.zeros((n, k)), np.zeros((n, k))
    total = np.zeros(n)
    rows = np.arange(n)
    for t in range(pulls):
        if name == "random":
            a = rng.integers(0, k, size=n)
        elif name == "thompson":
            a = rng.beta(1 + wins, 1 + counts - wins).argmax(1)
        elif name == "ucb1":
            if t < k:
                a = np.full(n, t)
            else:
                a = (wins / counts + np.sqrt(2 * np.log(t) / counts)).argmax(1)
        else:
            raise ValueError(f"unknown bandit baseline {name!r}")
        r = (rng.random(n) < p[rows, a]).astype(float)
        counts[rows, a] += 1
        wins[rows, a] += r
        total += r
    return total


def mdp_baseline(
    name: str, family: TabularMDP, tasks: Sequence[TabularMDPTask], episodes: int, seed: int
) -> np.ndarray:
    """Total reward over ``episodes`` episodes of ``random`` or ``psrl`` on each task."""
    rng = np.random.default_rng(seed)
    S, A, H = family.num_states, family.num_actions, family.horizon
    means = np.array([t.reward_means for t in tasks])  # [n, S, A]
    cdf = np.cumsum(np.array([t.transitions for t in tasks]), axis=-1)
    cdf[..., -1] = 1.0
    n = len(tasks)
    rows = np.arange(n)
    # posterior statistics
    r_sum, r_cnt = np.zeros((n, S, A)), np.zeros((n, S, A))
    trans_cnt = np.zeros((n, S, A, S))
    total = np.zeros(n)
    for _ in range(episodes):
        if name == "psrl":
            post_var = 1.0 / (1.0 + r_cnt)  # prior N(1, 1), noise variance 1
            post_mean = post_var * (1.0 + r_sum)
            R = post_mean + np.sqrt(post_var) * rng.standard_normal((n, S, A))
            P = _dirichlet(rng, 1.0 + trans_cnt)
            policy = _finite_horizon_policy(R, P, H)  # [n, H, S]
        s = np.zeros(n, dtype=int)
        for h in range(H):
            a = rng.integers(0, A, size=n) if name == "random" else policy[rows, h, s]
            r = means[rows, s, a] + rng.standard_normal(n)
            s2 = (cdf[rows, s, a] < rng.random(n)[:, None]).sum(1).clip(max=S - 1)
            if name == "psrl":
                r_sum[rows, s, a] += r
                r_cnt[rows, s, a] += 1
                trans_cnt[rows, s, a, s2] += 1
            total += r
            s = s2
    return total


def _dirichlet(rng: np.random.Generator, alpha: np.ndarray) -> np.ndarray:
    g = rng.gamma(alpha)
    return g / g.sum(-1, keepdims=True)


def _finite_horizon_policy(R: np.ndarray, P: np.ndarray, H: int) -> np.ndarray:
    n, S, A = R.shape
    V = np.zeros((n, S))
    policy = np.zeros((n, H, S), dtype=int)
    for h in range(H - 1, -1, -1):
        Q = R + np.einsum("nsat,nt->nsa", P, V)
        policy[:, h] = Q.argmax(-1)
        V = Q.max(-1)
    return policy
