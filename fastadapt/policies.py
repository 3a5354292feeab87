"""MLP policies whose parameters are a plain ``dict[str, Tensor]``, batched over tasks.

Parameters come in two forms and every function accepts both:

* shared (meta) parameters: ``layers.0.weight`` is ``[out, in]``;
* per-task parameters: a leading task dim, ``[tasks, out, in]``, with observations ``[tasks, B, obs]``.

Per-task parameters run through batched matmuls (``baddbmm``): after adaptation every task has its own
weights and no Python loop over tasks is needed. The diagonal-Gaussian log-probability sums over
action dimensions; its log-std is a state-independent parameter (as in the MAML paper).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import gymnasium as gym
import torch
import torch.nn.functional as F

from fastadapt.errors import ConfigError, SpaceError

Params = dict[str, torch.Tensor]

ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh}

#: Initializations of an MLP's weights (:meth:`MLPPolicy.init_params`).
INITS = ("small-output", "xavier")

#: Default hidden sizes, activation and initialization per family (each family's reference; the
#: MAML reference code starts its 2D-navigation policy as rllab's MLP does: Xavier-uniform weights,
#: zero biases).
DEFAULT_ARCH: dict[str, tuple[tuple[int, ...], str, str]] = {
    "Navigation2D-v0": ((100, 100), "relu", "xavier"),  # MAML paper
    "CartPoleDynamics-v0": ((64,), "relu", "small-output"),  # the origin article's network
    "PendulumDynamics-v0": ((64, 64), "tanh", "small-output"),
    "Bandit-v0": ((64,), "relu", "small-output"),
    "TabularMDP-v0": ((64,), "relu", "small-output"),
}


def default_arch(family_id: str) -> tuple[tuple[int, ...], str, str]:
    """A family's default hidden sizes, activation and initialization (``DEFAULT_ARCH``; a user's
    own family gets 2x100 ReLU, ``small-output``)."""
    return DEFAULT_ARCH.get(
        family_id.removeprefix("fastadapt/"), ((100, 100), "relu", "small-output")
    )


def check_init(scheme: str) -> None:
    """Refuse an initialization not in ``INITS``, naming the known ones."""
    if scheme not in INITS:
        raise ConfigError(f"unknown init {scheme!r}; known: {', '.join(INITS)}")


def init_for_family(family_id: str, init: str = "") -> str:
    """The initialization a policy of ``family_id`` starts from: ``init``, or when empty the
    family's default (:func:`default_arch`)."""
    scheme = init or default_arch(family_id)[2]
    check_init(scheme)
    return scheme


class DistParams(NamedTuple):
    """The action distribution at a batch of observations: categorical ``logits`` (``std_log`` is
    None) or Gaussian ``mean`` with ``log_std`` broadcastable to it."""

    loc: torch.Tensor
    log_std: torch.Tensor | None


@dataclass(frozen=True)
class MLPPolicy:
    """A categorical (``discrete=True``) or diagonal-Gaussian MLP policy.

    ``action_dim`` is the number of actions for a discrete policy, the action size otherwise.
    """

    obs_dim: int
    action_dim: int
    discrete: bool
    hidden: tuple[int, ...] = (100, 100)
    activation: str = "relu"
    init_log_std: float = 0.0
    context_dim: int = 0
    """CAVIA context parameters (``params["context"]``, zeros at init) fed to the first layer beside
    the observation; a policy with them adapts only them (:attr:`adapted_keys`)."""

    def __post_init__(self) -> None:
        if self.context_dim < 0:
            raise ConfigError(f"context_dim must be >= 0, got {self.context_dim}")
        if self.obs_dim <= 0 or self.action_dim <= 0:
            raise ConfigError(
                f"policy sizes must be positive, got obs_dim={self.obs_dim}, "
                f"action_dim={self.action_dim}"
            )
        if any(h <= 0 for h in self.hidden):
            raise ConfigError(f"hidden sizes must be positive, got {self.hidden}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(
                f"unknown activation {self.activation!r}; known: {sorted(ACTIVATIONS)}"
            )

    @classmethod
    def for_spaces(
        cls,
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Space,
        hidden: tuple[int, ...] = (100, 100),
        activation: str = "relu",
        init_log_std: float = 0.0,
        context_dim: int = 0,
    ) -> MLPPolicy:
        """A policy that fits a family's spaces (flat Box observations; Discrete or Box actions)."""
        if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
            raise SpaceError(
                f"MLP policies need a flat Box observation space, got {observation_space}"
            )
        if isinstance(action_space, gym.spaces.Discrete):
            action_dim, discrete = int(action_space.n), True
        elif isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
            action_dim, discrete = action_space.shape[0], False
        else:
            raise SpaceError(f"unsupported action space {action_space}")
        return cls(
            observation_space.shape[0],
            action_dim,
            discrete,
            tuple(hidden),
            activation,
            init_log_std,
            context_dim,
        )

    # ---- parameters -------------------------------------------------------------------------

    def init_params(
        self, generator: torch.Generator | None = None, scheme: str = "small-output"
    ) -> Params:
        """Fresh parameters, ``log_std = init_log_std`` and a zero context. ``scheme``:

        * ``small-output``: PyTorch's default uniform init (weights and biases within
          ``1/sqrt(fan_in)``), the output layer's weights scaled by 0.01 and its bias zero (small
          initial logits / means);
        * ``xavier``: Xavier-uniform weights (within ``sqrt(6 / (fan_in + fan_out))``) and zero
          biases in every layer, output included (rllab's MLP, which the MAML reference code uses).
        """
        check_init(scheme)
        sizes = (self.obs_dim + self.context_dim, *self.hidden, self.action_dim)
        params: Params = {}
        xavier = scheme == "xavier"
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            bound = math.sqrt(6.0 / (n_in + n_out)) if xavier else 1.0 / math.sqrt(n_in)
            w = (torch.rand(n_out, n_in, generator=generator) * 2 - 1) * bound
            if xavier:
                b = torch.zeros(n_out)
            else:
                b = (torch.rand(n_out, generator=generator) * 2 - 1) * bound
                if i == len(sizes) - 2:
                    w, b = w * 0.01, b * 0.0
            params[f"layers.{i}.weight"], params[f"layers.{i}.bias"] = w, b
        if not self.discrete:
            params["log_std"] = torch.full((self.action_dim,), float(self.init_log_std))
        if self.context_dim:
            params["context"] = torch.zeros(self.context_dim)
        return params

    @property
    def adapted_keys(self) -> tuple[str, ...] | None:
        """The parameters an inner step changes: the context alone (CAVIA), or all (``None``)."""
        return ("context",) if self.context_dim else None

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Expected shape of each (shared) parameter."""
        return {k: tuple(v.shape) for k, v in self.init_params().items()}

    # ---- the distribution -------------------------------------------------------------------

    def dist(self, params: Params, obs: torch.Tensor) -> DistParams:
        """Distribution parameters at ``obs``. Per-task params need ``obs`` as ``[tasks, B, obs]``."""
        act = ACTIVATIONS[self.activation]
        n_layers = len(self.hidden) + 1
        x = obs
        if self.context_dim:
            c = params["context"]
            if c.dim() == 2:  # per task: [tasks, C] -> [tasks, 1, C]
                c = c.unsqueeze(1)
            x = torch.cat([obs, c.expand(*obs.shape[:-1], self.context_dim)], -1)
        for i in range(n_layers):
            x = _linear(x, params[f"layers.{i}.weight"], params[f"layers.{i}.bias"])
            if i < n_layers - 1:
                x = act(x)
        if self.discrete:
            return DistParams(x, None)
        log_std = params["log_std"]
        if log_std.dim() == 2:  # per task: [tasks, A] -> [tasks, 1, A]
            log_std = log_std.unsqueeze(1)
        return DistParams(x, log_std)

    def log_prob(self, d: DistParams, actions: torch.Tensor) -> torch.Tensor:
        """Log-probability of ``actions``; the Gaussian sums over action dimensions."""
        if self.discrete:
            logp = F.log_softmax(d.loc, dim=-1)
            return logp.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
        assert d.log_std is not None
        z = (actions - d.loc) * torch.exp(-d.log_std)
        return (-0.5 * z.pow(2) - d.log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def sample(self, d: DistParams, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw actions (long for discrete, float otherwise). The randomness is drawn on the
        generator's device (the CPU without one), so a seed gives the same actions whichever device
        the policy runs on, up to rounding."""
        where = generator.device if generator is not None else torch.device("cpu")
        if self.discrete:
            probs = torch.softmax(d.loc, dim=-1)
            flat = probs.reshape(-1, probs.shape[-1]).to(where)
            a = torch.multinomial(flat, 1, generator=generator)
            return a.to(d.loc.device).reshape(probs.shape[:-1])
        assert d.log_std is not None
        noise = torch.randn(d.loc.shape, generator=generator, dtype=d.loc.dtype, device=where)
        return d.loc + torch.exp(d.log_std) * noise.to(d.loc.device)

    def mode(self, d: DistParams) -> torch.Tensor:
        """The most likely action (greedy acting)."""
        return d.loc.argmax(-1) if self.discrete else d.loc

    def kl(self, old: DistParams, new: DistParams) -> torch.Tensor:
        """KL(old || new) per sample."""
        if self.discrete:
            lp_old, lp_new = F.log_softmax(old.loc, -1), F.log_softmax(new.loc, -1)
            return (lp_old.exp() * (lp_old - lp_new)).sum(-1)
        assert old.log_std is not None and new.log_std is not None
        var_old, var_new = torch.exp(2 * old.log_std), torch.exp(2 * new.log_std)
        kl = (
            new.log_std - old.log_std + (var_old + (old.loc - new.loc).pow(2)) / (2 * var_new) - 0.5
        )
        return kl.sum(-1)

    def entropy(self, d: DistParams) -> torch.Tensor:
        """Entropy per sample."""
        if self.discrete:
            lp = F.log_softmax(d.loc, -1)
            return -(lp.exp() * lp).sum(-1)
        assert d.log_std is not None
        ent = d.log_std + 0.5 * math.log(2 * math.pi * math.e)
        return ent.expand_as(d.loc).sum(-1)


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if w.dim() == 3:  # per task: x [tasks, B, in], w [tasks, out, in]
        return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))
    return F.linear(x, w, b)


def expand_params(params: Params, num_tasks: int) -> Params:
    """Shared parameters viewed as per-task parameters (no copy)."""
    return {k: v.unsqueeze(0).expand(num_tasks, *v.shape) for k, v in params.items()}


def per_task_params(params: Params, num_tasks: int) -> Params:
    """Per-task parameters as they are, shared ones viewed per task (``expand_params``)."""
    return params if params["layers.0.weight"].dim() == 3 else expand_params(params, num_tasks)


def policy_for_family(
    family_id: str,
    observation_space: gym.spaces.Space,
    action_space: gym.spaces.Space,
    hidden: tuple[int, ...] | None = None,
    activation: str | None = None,
    init_log_std: float = 0.0,
    context_dim: int = 0,
) -> MLPPolicy:
    """A policy for a family with that family's default architecture unless overridden."""
    d_hidden, d_act, _ = default_arch(family_id)
    return MLPPolicy.for_spaces(
        observation_space,
        action_space,
        tuple(hidden) if hidden else d_hidden,
        activation or d_act,
        init_log_std,
        context_dim,
    )
