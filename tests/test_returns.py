import numpy as np
import pytest
import torch

from fastadapt.returns import (
    baseline_features,
    discounted_returns,
    fit_linear_baseline,
    gae,
    linear_baseline_advantages,
    predict_linear_baseline,
)


def random_batch(seed=0, tasks=3, T=7, E=4):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (tasks, E), generator=g)
    mask = (torch.arange(T).view(1, T, 1) < lengths.unsqueeze(1)).float()
    rewards = torch.randn(tasks, T, E, generator=g, dtype=torch.float64) * mask
    values = torch.randn(tasks, T, E, generator=g, dtype=torch.float64) * mask
    boot = torch.randn(tasks, E, generator=g, dtype=torch.float64)
    term_flag = torch.rand(tasks, E, generator=g) < 0.5
    terminated = torch.zeros(tasks, T, E, dtype=torch.float64)
    for i in range(tasks):
        for e in range(E):
            if term_flag[i, e]:
                terminated[i, lengths[i, e] - 1, e] = 1
    return rewards, values, boot, terminated, mask.double(), lengths


def brute_force_gae(rewards, values, boot, terminated, lengths, gamma, lam):
    out = torch.zeros_like(rewards)
    tasks, T, E = rewards.shape
    for i in range(tasks):
        for e in range(E):
            L = int(lengths[i, e])
            for t in range(L):
                total = 0.0
                for k in range(t, L):
                    if k + 1 < L:
                        v_next = values[i, k + 1, e]
                    else:
                        v_next = 0.0 if terminated[i, k, e] else boot[i, e]
                    delta = rewards[i, k, e] + gamma * v_next - values[i, k, e]
                    total += (gamma * lam) ** (k - t) * delta
                out[i, t, e] = total
    return out


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 1.0), (0.5, 0.0), (1.0, 0.7)])
def test_gae_matches_brute_force(gamma, lam):
    r, v, b, term, mask, lengths = random_batch()
    ours = gae(r, v, b, term, mask, gamma, lam)
    torch.testing.assert_close(ours, brute_force_gae(r, v, b, term, lengths, gamma, lam))


def test_gae_lambda_one_is_monte_carlo_and_zero_is_td():
    r, v, b, term, mask, lengths = random_batch(1)
    term = torch.zeros_like(term)
    last = (torch.arange(r.shape[1]).view(1, -1, 1) == (lengths - 1).unsqueeze(1)).double()
    term_all = last  # every episode terminates: MC return minus value, no bootstrap
    adv1 = gae(r, v, b, term_all, mask, 0.9, 1.0)
    torch.testing.assert_close(adv1, (discounted_returns(r, mask, 0.9) - v) * mask)
    adv0 = gae(r, v, b, term_all, mask, 0.9, 0.0)
    v_next = torch.cat([v[:, 1:], torch.zeros_like(v[:, :1])], 1) * (1 - last)
    torch.testing.assert_close(adv0, (r + 0.9 * v_next - v) * mask)


def test_truncation_bootstraps_and_termination_does_not():
    r = torch.zeros(1, 2, 1, dtype=torch.float64)
    v = torch.zeros_like(r)
    mask = torch.ones_like(r)
    boot = torch.tensor([[10.0]], dtype=torch.float64)
    truncated = gae(r, v, boot, torch.zeros_like(r), mask, 0.5, 1.0)
    torch.testing.assert_close(truncated[0, :, 0], torch.tensor([2.5, 5.0], dtype=torch.float64))
    term = torch.zeros_like(r)
    term[0, 1, 0] = 1
    assert gae(r, v, boot, term, mask, 0.5, 1.0).abs().sum() == 0


def test_discounted_returns_by_hand():
    r = torch.tensor([[[1.0], [2.0], [3.0], [9.0]]])
    mask = torch.tensor([[[1.0], [1.0], [1.0], [0.0]]])
    G = discounted_returns(r, mask, 0.5)
    torch.testing.assert_close(
        G[0, :, 0], torch.tensor([1 + 0.5 * 2 + 0.25 * 3, 2 + 1.5, 3.0, 0.0])
    )


def test_linear_baseline_matches_lstsq():
    g = torch.Generator().manual_seed(0)
    tasks, T, E, D = 2, 6, 3, 2
    obs = torch.randn(tasks, T, E, D, generator=g, dtype=torch.float64)
    returns = torch.randn(tasks, T, E, generator=g, dtype=torch.float64)
    mask = torch.ones(tasks, T, E, dtype=torch.float64)
    mask[1, 4:, 0] = 0
    reg = 1e-3
    w = fit_linear_baseline(obs, returns, mask, reg)
    for i in range(tasks):
        t = torch.arange(T, dtype=torch.float64).view(T, 1).expand(T, E)
        X = baseline_features(obs[i], t)[mask[i] > 0].numpy()
        y = returns[i][mask[i] > 0].numpy()
        A = np.vstack([X, np.sqrt(reg) * np.eye(X.shape[1])])
        b = np.concatenate([y, np.zeros(X.shape[1])])
        ref = np.linalg.lstsq(A, b, rcond=None)[0]
        np.testing.assert_allclose(w[i].numpy(), ref, rtol=1e-6, atol=1e-8)
    pred = predict_linear_baseline(w, obs, torch.arange(T, dtype=torch.float64).view(T, 1))
    assert pred.shape == (tasks, T, E)


def test_linear_baseline_advantages_fit_a_learnable_return():
    from fastadapt.sampling import Episodes

    tasks, T, E = 2, 5, 8
    obs = torch.randn(tasks, T, E, 1)
    rewards = torch.ones(tasks, T, E)
    mask = torch.ones(tasks, T, E)
    term = torch.zeros(tasks, T, E)
    term[:, -1] = 1
    ep = Episodes(
        obs,
        torch.zeros(tasks, T, E, 1),
        torch.zeros(tasks, T, E),
        rewards,
        mask,
        term,
        torch.zeros(tasks, E, 1),
        torch.full((tasks, E), T),
    )
    adv, ret = linear_baseline_advantages(ep, gamma=1.0, lam=1.0, reg_coeff=1e-8)
    # return-to-go T - t is a cubic in t: the baseline fits it, advantages vanish
    assert adv.abs().max() < 1e-3
    torch.testing.assert_close(ret[0, :, 0], torch.tensor([5.0, 4, 3, 2, 1]))
