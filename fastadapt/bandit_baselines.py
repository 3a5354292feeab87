"""Classical baselines for the RL² families, vectorized over many tasks at once.

Bandits: random, UCB1 (Auer et al. 2002; its exploration constant can be tuned on training bandits,
as the RL² paper tuned its baselines), Thompson sampling with a uniform Beta prior, and for short
trials the Bayes-optimal policy itself (exact dynamic programming over the Beta posteriors: the
ceiling no learner can beat in expectation).
Tabular MDPs: random, posterior sampling (PSRL, Osband et al. 2013) with the families' own priors
(mean rewards N(1, 1) with unit observation noise, transitions Dirichlet(1)) and greedy planning on
the posterior mean MDP, each episode solved by finite-horizon value iteration. All return the total
reward per trial, ``[tasks]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from math import sqrt

import numpy as np

from fastadapt.tasks.bandit import Bandit, BanditTask, TabularMDP, TabularMDPTask


def bandit_baseline(
    name: str,
    family: Bandit,
    tasks: Sequence[BanditTask],
    pulls: int,
    seed: int,
    ucb_c: float = sqrt(2),
) -> np.ndarray:
    """Total reward over ``pulls`` pulls of ``random``, ``ucb1``, ``thompson`` or ``bayes`` (the
    Bayes-optimal policy, ``pulls <= MAX_BAYES_PULLS``) on each task. UCB1 pulls every arm once,
    then the arm maximizing ``mean + ucb_c * sqrt(ln t / count)`` (``sqrt(2)``: Auer et al.)."""
    return bandit_play(name, family, tasks, pulls, seed, ucb_c)[1].sum(1)


def bandit_play(
    name: str,
    family: Bandit,
    tasks: Sequence[BanditTask],
    pulls: int,
    seed: int,
    ucb_c: float = sqrt(2),
) -> tuple[np.ndarray, np.ndarray]:
    """The arms ``name`` pulls and the rewards it gets, each ``[tasks, pulls]`` (the baselines of
    :func:`bandit_baseline`)."""
    rng = np.random.default_rng(seed)
    p = np.array([t.arm_probs for t in tasks])
    n, k = p.shape
    if name == "bayes":
        q = _bayes_q(k, pulls)
    counts, wins = np.zeros((n, k)), np.zeros((n, k))
    arms, rewards = np.zeros((n, pulls), dtype=np.int64), np.zeros((n, pulls))
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
                a = (wins / counts + ucb_c * np.sqrt(np.log(t) / counts)).argmax(1)
        elif name == "bayes":
            a = _bayes_actions(q, wins, counts - wins, pulls - t, rng)
        else:
            raise ValueError(f"unknown bandit baseline {name!r}")
        r = (rng.random(n) < p[rows, a]).astype(float)
        counts[rows, a] += 1
        wins[rows, a] += r
        arms[:, t], rewards[:, t] = a, r
    return arms, rewards


UCB_GRID = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0, sqrt(2))
"""Exploration constants ``tune_ucb1`` chooses from."""


def tune_ucb1(
    family: Bandit,
    tasks: Sequence[BanditTask],
    pulls: int,
    seed: int,
    grid: Sequence[float] = UCB_GRID,
) -> float:
    """The UCB1 exploration constant from ``grid`` with the highest mean total reward over
    ``pulls`` pulls on ``tasks`` (pass training tasks; report it on others)."""
    if not grid or min(grid) < 0:
        raise ValueError(f"tune_ucb1 needs a non-empty grid of constants >= 0, got {list(grid)}")
    means = [bandit_baseline("ucb1", family, tasks, pulls, seed, ucb_c=c).mean() for c in grid]
    return float(grid[int(np.argmax(means))])


MAX_BAYES_PULLS = 20
"""Longest trial the exact Bayes-optimal bandit policy is computed for (k = 10, 20 pulls: about
25 s and 1.3 GB; the number of posterior states grows combinatorially with the pulls)."""


def bayes_optimal_value(k: int, pulls: int) -> float:
    """Expected total reward of the Bayes-optimal policy over ``pulls`` pulls of a k-armed Bernoulli
    bandit whose arm probabilities are i.i.d. uniform on [0, 1] (``Bandit-v0``'s prior): exact
    finite-horizon dynamic programming over the arms' Beta posteriors."""
    return _bayes_q(k, pulls)(((0, 0),) * k, pulls)[0]


Posterior = tuple[tuple[int, int], ...]
BayesQ = Callable[[Posterior, int], tuple[float, dict[tuple[int, int], float]]]


def _bayes_q(k: int, pulls: int) -> BayesQ:
    """``q(state, left) -> (value, {(wins, losses): Q})``: ``state`` is the sorted tuple of each
    arm's (wins, losses), ``left`` the pulls to go; Q is the expected reward to go after pulling an
    arm with those counts, then acting optimally."""
    if not 1 <= pulls <= MAX_BAYES_PULLS or k < 1:
        raise ValueError(
            f"the exact Bayes-optimal bandit policy is computed for 1..{MAX_BAYES_PULLS} pulls and "
            f"k >= 1 arms (its state space grows combinatorially); got k={k}, pulls={pulls}"
        )

    @cache
    def q(state: Posterior, left: int) -> tuple[float, dict[tuple[int, int], float]]:
        if left == 0:
            return 0.0, {}
        values = {}
        for i, (w, f) in enumerate(state):
            if (w, f) in values:
                continue
            p = (w + 1) / (w + f + 2)  # posterior mean under Beta(1, 1)
            up = tuple(sorted(state[:i] + ((w + 1, f),) + state[i + 1 :]))
            down = tuple(sorted(state[:i] + ((w, f + 1),) + state[i + 1 :]))
            values[(w, f)] = p * (1.0 + q(up, left - 1)[0]) + (1.0 - p) * q(down, left - 1)[0]
        return max(values.values()), values

    return q


def _bayes_actions(
    q: BayesQ, wins: np.ndarray, losses: np.ndarray, left: int, rng: np.random.Generator
) -> np.ndarray:
    """Each task's Bayes-optimal arm (ties between arms broken at random). Tasks in the same
    posterior state share one lookup: there are far fewer states than tasks."""
    w, f = wins.astype(int), losses.astype(int)
    code = w * (w.max() + f.max() + 2) + f  # one integer per arm's (wins, losses)
    states, inverse = np.unique(np.sort(code, axis=1), axis=0, return_inverse=True)
    arm_q = np.empty(w.shape)
    for s, state in enumerate(states):
        tasks = inverse.reshape(-1) == s
        j = int(np.argmax(tasks))  # a task in this state, to read its counts
        pairs = sorted(zip(w[j].tolist(), f[j].tolist(), strict=True))
        _, values = q(tuple(pairs), left)
        table = dict(zip(state.tolist(), (values[pair] for pair in pairs), strict=True))
        arm_q[tasks] = np.vectorize(table.__getitem__, otypes=[float])(code[tasks])
    best = arm_q >= arm_q.max(1, keepdims=True) - 1e-12
    return (best * rng.random(w.shape)).argmax(1)


def mdp_baseline(
    name: str, family: TabularMDP, tasks: Sequence[TabularMDPTask], episodes: int, seed: int
) -> np.ndarray:
    """Total reward over ``episodes`` episodes of ``random``, ``psrl``, ``greedy`` or ``myopic`` on
    each task. ``greedy`` plans each episode on the posterior mean MDP (the RL² paper's "Greedy");
    ``myopic`` ignores the transitions and takes, at every step, the action with the highest
    posterior mean reward in the current state, its posterior updated after every step. Ties are
    broken at random."""
    if name not in ("random", "psrl", "greedy", "myopic"):
        raise ValueError(f"unknown MDP baseline {name!r}")
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
        if name in ("psrl", "greedy"):
            post_mean, post_var = _reward_posterior(r_sum, r_cnt)
            if name == "psrl":
                R = post_mean + np.sqrt(post_var) * rng.standard_normal((n, S, A))
                P = _dirichlet(rng, 1.0 + trans_cnt)
            else:
                R = post_mean + 1e-9 * rng.random((n, S, A))  # the noise breaks ties
                P = (1.0 + trans_cnt) / (1.0 + trans_cnt).sum(-1, keepdims=True)
            policy = _finite_horizon_policy(R, P, H)  # [n, H, S]
        s = np.zeros(n, dtype=int)
        for h in range(H):
            if name == "random":
                a = rng.integers(0, A, size=n)
            elif name == "myopic":
                q, _ = _reward_posterior(r_sum[rows, s], r_cnt[rows, s])
                a = (q + 1e-9 * rng.random((n, A))).argmax(1)  # the noise breaks ties
            else:
                a = policy[rows, h, s]
            r = means[rows, s, a] + rng.standard_normal(n)
            s2 = (cdf[rows, s, a] < rng.random(n)[:, None]).sum(1).clip(max=S - 1)
            if name != "random":
                r_sum[rows, s, a] += r
                r_cnt[rows, s, a] += 1
                trans_cnt[rows, s, a, s2] += 1
            total += r
            s = s2
    return total


def _reward_posterior(r_sum: np.ndarray, r_cnt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and variance of each mean reward from its running sum and count: prior
    N(1, 1), reward noise of variance 1 (the family's own distributions)."""
    var = 1.0 / (1.0 + r_cnt)
    return var * (1.0 + r_sum), var


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
