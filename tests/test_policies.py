import math

import pytest
import torch
from torch.distributions import Categorical, Independent, Normal

from fastadapt.config import MAMLConfig
from fastadapt.errors import ConfigError
from fastadapt.policies import MLPPolicy, expand_params, init_for_family
from fastadapt.train import make_learner


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


def test_xavier_and_small_output_inits():
    pol = MLPPolicy(2, 3, False, hidden=(100, 50))
    p = pol.init_params(torch.Generator().manual_seed(0), "xavier")
    for i, (n_in, n_out) in enumerate([(2, 100), (100, 50), (50, 3)]):
        w, b = p[f"layers.{i}.weight"], p[f"layers.{i}.bias"]
        bound = math.sqrt(6 / (n_in + n_out))
        assert torch.all(b == 0) and w.abs().max() <= bound
        # a uniform's variance bound^2 / 3 is Glorot's 2 / (fan_in + fan_out)
        assert w.var().item() == pytest.approx(2 / (n_in + n_out), rel=0.25)
    s = pol.init_params(torch.Generator().manual_seed(0))
    assert s["layers.0.bias"].abs().max() > 0 and s["layers.0.weight"].abs().max() > 0.5
    assert s["layers.2.weight"].abs().max() <= 0.01 / math.sqrt(50)
    assert torch.all(s["layers.2.bias"] == 0)
    with pytest.raises(ConfigError, match="unknown init 'he'; known: small-output, xavier"):
        pol.init_params(None, "he")


def test_family_default_init_reaches_the_learner():
    assert init_for_family("fastadapt/Navigation2D-v0") == "xavier"
    assert init_for_family("Navigation2D-v0", "small-output") == "small-output"
    assert init_for_family("CartPoleDynamics-v0") == "small-output"
    tiny = dict(meta_batch_size=2, episodes_per_task=2, meta_iterations=1)
    nav = make_learner("maml", MAMLConfig(**tiny)).meta_params
    assert all(torch.all(v == 0) for k, v in nav.items() if k.endswith("bias"))
    cp = make_learner("maml", MAMLConfig(env="CartPoleDynamics-v0", **tiny)).meta_params
    assert cp["layers.0.bias"].abs().max() > 0
    forced = make_learner("maml", MAMLConfig(init="small-output", **tiny)).meta_params
    assert forced["layers.0.bias"].abs().max() > 0
