import pytest
import torch
from torch.distributions import Categorical, Independent, Normal

from fastadapt.errors import ConfigError
from fastadapt.policies import MLPPolicy, expand_params


@pytest.mark.parametrize("discrete", [True, False])
def test_batched_over_tasks_equals_per_task_loop(discrete):
    pol = MLPPolicy(3, 4, discrete, hidden=(8, 8), activation="tanh")
    tasks = 5
    per_task = {
        k: torch.stack([pol.init_params(torch.Generator().manual_seed(i))[k] for i in range(tasks)])
        for k in pol.param_shapes()
    }
    obs = torch.randn(tasks, 7, 3)
    batched = pol.dist(per_task, obs)
    for i in range(tasks):
        single = pol.dist({k: v[i] for k, v in per_task.items()}, obs[i])
        torch.testing.assert_close(batched.loc[i], single.loc)
        if not discrete:
            torch.testing.assert_close(batched.log_std[i, 0], single.log_std)


def test_shared_params_equal_expanded():
    pol = MLPPolicy(2, 2, False)
    p = pol.init_params(torch.Generator().manual_seed(0))
    obs = torch.randn(4, 6, 2)
    torch.testing.assert_close(pol.dist(p, obs).loc, pol.dist(expand_params(p, 4), obs).loc)


def test_gaussian_log_prob_sums_dims_and_kl_entropy_match_torch():
    pol = MLPPolicy(2, 3, False, hidden=(5,))
    p = pol.init_params(torch.Generator().manual_seed(0))
    p["log_std"] = torch.tensor([-0.5, 0.0, 0.3])
    q = {k: v + 0.1 for k, v in p.items()}
    obs = torch.randn(10, 2)
    d, e = pol.dist(p, obs), pol.dist(q, obs)
    a = pol.sample(d, torch.Generator().manual_seed(1))
    ref_d = Independent(Normal(d.loc, d.log_std.exp().expand_as(d.loc)), 1)
    ref_e = Independent(Normal(e.loc, e.log_std.exp().expand_as(e.loc)), 1)
    torch.testing.assert_close(pol.log_prob(d, a), ref_d.log_prob(a))
    torch.testing.assert_close(pol.kl(d, e), torch.distributions.kl_divergence(ref_d, ref_e))
    torch.testing.assert_close(pol.entropy(d), ref_d.entropy())


def test_categorical_matches_torch():
    pol = MLPPolicy(2, 4, True, hidden=(5,))
    p = pol.init_params(torch.Generator().manual_seed(0))
    p["layers.1.weight"] = torch.randn_like(p["layers.1.weight"])
    q = {k: v + 0.2 * torch.randn_like(v) for k, v in p.items()}
    obs = torch.randn(10, 2)
    d, e = pol.dist(p, obs), pol.dist(q, obs)
    a = pol.sample(d, torch.Generator().manual_seed(1))
    ref_d, ref_e = Categorical(logits=d.loc), Categorical(logits=e.loc)
    torch.testing.assert_close(pol.log_prob(d, a), ref_d.log_prob(a))
    torch.testing.assert_close(pol.kl(d, e), torch.distributions.kl_divergence(ref_d, ref_e))
    torch.testing.assert_close(pol.entropy(d), ref_d.entropy())


def test_bad_policy_config():
    with pytest.raises(ConfigError, match="activation"):
        MLPPolicy(2, 2, False, activation="gelu2")
    with pytest.raises(ConfigError, match="hidden"):
        MLPPolicy(2, 2, False, hidden=(0,))
