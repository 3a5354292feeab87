"""Policies over a trial's history for RL²: GRU, LSTM and a causal Transformer.

The input at step ``t`` of a trial is ``(obs_t, prev_action, prev_reward, prev_done)``: the previous
step's action (one-hot if discrete), reward, and whether that step ended an episode; with
``time_inputs`` then a clock: ``(step within the episode / horizon, episode within the trial /
episodes)``, both in [0, 1); with ``prev_obs_inputs`` last the observation that previous action
was taken in (so one step's input holds the whole previous transition). The hidden state (for
the Transformer, a cache of every layer's keys and values, so a step attends to the trial so far
without recomputing it) runs across the episodes of one trial and starts fresh with each trial.
Each policy has an actor head (categorical logits, or a Gaussian mean with a state-independent
log-std) and a critic head, both on one sequence model or, with ``separate_critic``, each on its
own (same kind and size; the state is then the pair).

Shapes: ``inputs [B, L, input_dim]`` for a sequence, ``[B, input_dim]`` for one step.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn as nn

from fastadapt.errors import ConfigError
from fastadapt.policies import DistParams, MLPPolicy

KINDS = ("gru", "lstm", "transformer")


class KVCache(NamedTuple):
    """A Transformer's memory of a trial so far: per layer, the keys and values of every step
    (``[B, heads, max_len, head_dim]``), which slots hold a step of each trial (``valid [B,
    max_len]``; trials that wait for others leave gaps) and how many slots are used."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    valid: torch.Tensor
    used: int


def rl2_input_dim(
    obs_dim: int, action_dim: int, time_inputs: bool = False, prev_obs_inputs: bool = False
) -> int:
    """Width of an RL² input: observation, previous action, reward and done flag (and the clock,
    and the previous observation)."""
    return obs_dim * (2 if prev_obs_inputs else 1) + action_dim + 2 + (2 if time_inputs else 0)


class SequencePolicy(nn.Module):
    """An actor-critic over trial histories. ``kind`` is gru, lstm or transformer."""

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        discrete: bool,
        kind: str = "gru",
        hidden: int = 256,
        layers: int = 1,
        heads: int = 4,
        max_len: int = 1024,
        init_log_std: float = 0.0,
        time_inputs: bool = False,
        separate_critic: bool = False,
        prev_obs_inputs: bool = False,
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ConfigError(f"unknown recurrent policy {kind!r}; known: {', '.join(KINDS)}")
        if hidden <= 0 or layers <= 0:
            raise ConfigError(f"hidden and layers must be positive, got {hidden}, {layers}")
        if kind == "transformer" and hidden % heads:
            raise ConfigError(f"transformer width {hidden} must be divisible by heads {heads}")
        self.obs_dim, self.action_dim, self.discrete, self.kind = (
            obs_dim,
            action_dim,
            discrete,
            kind,
        )
        self.hidden, self.max_len, self.time_inputs = hidden, max_len, time_inputs
        self.separate_critic, self.prev_obs_inputs = separate_critic, prev_obs_inputs
        for prefix in self.streams:
            self._build_stream(prefix, layers, heads)
        self.actor = nn.Linear(hidden, action_dim)
        nn.init.orthogonal_(self.actor.weight, 0.01)
        nn.init.zeros_(self.actor.bias)
        self.critic = nn.Linear(hidden, 1)
        self.log_std = None if discrete else nn.Parameter(torch.full((action_dim,), init_log_std))
        # the distribution arithmetic (log-prob summed over dims, KL, entropy) is the MLP policy's
        self.dist_ops = MLPPolicy(obs_dim, action_dim, discrete, hidden=(1,))

    def _build_stream(self, prefix: str, layers: int, heads: int) -> None:
        """The sequence model's modules, registered as ``{prefix}core`` (and for the Transformer
        ``{prefix}embed``, ``{prefix}pos``)."""
        in_dim, hidden = self.input_dim, self.hidden
        if self.kind == "gru":
            core: nn.Module = nn.GRU(in_dim, hidden, layers, batch_first=True)
        elif self.kind == "lstm":
            core = nn.LSTM(in_dim, hidden, layers, batch_first=True)
        else:
            setattr(self, prefix + "embed", nn.Linear(in_dim, hidden))
            pos = nn.Parameter(torch.zeros(self.max_len, hidden))
            nn.init.normal_(pos, std=0.02)
            setattr(self, prefix + "pos", pos)
            layer = nn.TransformerEncoderLayer(
                hidden, heads, 2 * hidden, dropout=0.0, batch_first=True, norm_first=True
            )
            core = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        setattr(self, prefix + "core", core)

    @property
    def streams(self) -> tuple[str, ...]:
        """The sequence models' name prefixes: the actor's (or the shared one) unprefixed, a
        separate critic's ``critic_``."""
        return ("", "critic_") if self.separate_critic else ("",)

    @property
    def input_dim(self) -> int:
        """Width of one step's input."""
        return rl2_input_dim(self.obs_dim, self.action_dim, self.time_inputs, self.prev_obs_inputs)

    def encode_action(self, action: torch.Tensor) -> torch.Tensor:
        """An action as the next step's input sees it, ``[B, action_dim]``: one-hot if discrete."""
        if self.discrete:
            return nn.functional.one_hot(action.long(), self.action_dim).float()
        return action.float()

    def step_input(
        self,
        obs: torch.Tensor,
        prev_action: torch.Tensor,
        prev_reward: torch.Tensor,
        prev_done: torch.Tensor,
        prev_obs: torch.Tensor,
        clock: tuple[float, float],
    ) -> torch.Tensor:
        """One step's input ``[B, input_dim]`` from ``obs [B, obs_dim]``, the previous step's
        action (:meth:`encode_action`), reward and done flag ``[B]`` and observation ``[B,
        obs_dim]`` (the one that action was taken in; read only with ``prev_obs_inputs``), all
        zeros at a trial's start, and ``clock = (step within the episode / horizon, episode /
        episodes)`` (read only with ``time_inputs``): what the policy sees, when sampling trials
        and when acting."""
        parts = [obs, prev_action, prev_reward[:, None], prev_done[:, None].float()]
        if self.time_inputs:
            parts.append(torch.tensor([clock], device=obs.device).expand(obs.shape[0], 2))
        if self.prev_obs_inputs:
            parts.append(prev_obs)
        return torch.cat(parts, 1)

    # ---- the core -------------------------------------------------------------------------------

    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> Any:
        """A fresh state for ``batch`` trials (an empty key-value cache for the Transformer); with
        ``separate_critic``, the pair ``(actor's, critic's)``."""
        states = tuple(self._initial_stream_state(batch, device) for _ in self.streams)
        return states if self.separate_critic else states[0]

    def _initial_stream_state(self, batch: int, device: torch.device | str) -> Any:
        if self.kind == "transformer":
            heads = self.core.layers[0].self_attn.num_heads
            shape = (batch, heads, self.max_len, self.hidden // heads)
            return KVCache(
                [torch.zeros(shape, device=device) for _ in self.core.layers],
                [torch.zeros(shape, device=device) for _ in self.core.layers],
                torch.zeros(batch, self.max_len, dtype=torch.bool, device=device),
                0,
            )
        n_layers = self.core.num_layers
        h = torch.zeros(n_layers, batch, self.hidden, device=device)
        return (h, h.clone()) if self.kind == "lstm" else h

    def features(
        self, inputs: torch.Tensor, state: Any = None, stream: str = ""
    ) -> tuple[torch.Tensor, Any]:
        """Core outputs ``[B, L, hidden]`` of one stream (``""``: the actor's or the shared one;
        ``"critic_"``: the separate critic's) for a sequence, continuing from that stream's
        ``state`` (recurrent policies; the Transformer reads whole trials here and continues one
        with :meth:`step`)."""
        core = getattr(self, stream + "core")
        if self.kind == "transformer":
            if state is not None:
                raise ValueError("a Transformer continues a trial one step at a time (step())")
            L = inputs.shape[1]
            if L > self.max_len:
                raise ConfigError(
                    f"trial of {L} steps exceeds the transformer's max_len {self.max_len}"
                )
            x = getattr(self, stream + "embed")(inputs) + getattr(self, stream + "pos")[:L]
            causal = torch.triu(torch.full((L, L), float("-inf"), device=x.device), diagonal=1)
            return core(x, mask=causal), None
        if state is None:
            state = self._initial_stream_state(inputs.shape[0], inputs.device)
        return core(inputs, state)

    def _attend_step(
        self, x: torch.Tensor, cache: KVCache, stream: str = ""
    ) -> tuple[torch.Tensor, KVCache]:
        """One step of the Transformer from its cache: the same arithmetic as the encoder layers
        (pre-norm attention and feed-forward blocks) for the new position only, attending to the
        cached keys and values of the trial's earlier steps. The cache's buffers are written in
        place (slot ``used``); the returned cache marks that slot as a step of every trial, and
        :func:`select_state` unmarks it for trials that did not take it."""
        t = cache.used
        if t >= self.max_len:
            raise ConfigError(
                f"trial of {t + 1} steps exceeds the transformer's max_len {self.max_len}"
            )
        B = x.shape[0]
        position = cache.valid[:, :t].sum(1)  # each trial's own step count (left-aligned)
        h = getattr(self, stream + "embed")(x) + getattr(self, stream + "pos")[position]
        valid = cache.valid.clone()
        valid[:, t] = True
        keep = valid[:, None, None, : t + 1]
        core = getattr(self, stream + "core")
        for layer, keys, values in zip(core.layers, cache.keys, cache.values, strict=True):
            attn = layer.self_attn
            heads, d = attn.num_heads, self.hidden // attn.num_heads
            q, k, v = nn.functional.linear(
                layer.norm1(h), attn.in_proj_weight, attn.in_proj_bias
            ).chunk(3, -1)
            keys[:, :, t] = k.view(B, heads, d)
            values[:, :, t] = v.view(B, heads, d)
            scores = q.view(B, heads, 1, d) @ keys[:, :, : t + 1].transpose(-1, -2) / d**0.5
            weights = scores.masked_fill(~keep, float("-inf")).softmax(-1)
            h = h + attn.out_proj((weights @ values[:, :, : t + 1]).reshape(B, self.hidden))
            h = h + layer.linear2(layer.activation(layer.linear1(layer.norm2(h))))
        return h, KVCache(cache.keys, cache.values, valid, t + 1)

    def _step_features(self, x: torch.Tensor, state: Any, stream: str) -> tuple[torch.Tensor, Any]:
        """One stream's core output ``[B, hidden]`` for one step ``[B, input_dim]``."""
        if self.kind == "transformer":
            return self._attend_step(x, state, stream)
        feats, state = self.features(x.unsqueeze(1), state, stream)
        return feats[:, 0], state

    def heads(
        self, feats: torch.Tensor, critic_feats: torch.Tensor | None = None
    ) -> tuple[DistParams, torch.Tensor]:
        """Action distribution and value from core outputs (the critic reads ``critic_feats``
        when given: a separate critic's stream)."""
        loc = self.actor(feats)
        log_std = None if self.log_std is None else self.log_std.expand_as(loc)
        value_feats = feats if critic_feats is None else critic_feats
        return DistParams(loc, log_std), self.critic(value_feats).squeeze(-1)

    def _run(self, fn: Any, x: torch.Tensor, state: Any):
        """``(dist, values, new_state)`` from ``fn(x, stream_state, stream)`` on every stream."""
        states = (state or (None, None)) if self.separate_critic else (state,)
        outs = [fn(x, s, stream) for s, stream in zip(states, self.streams, strict=True)]
        dist, values = self.heads(*(f for f, _ in outs))
        new = tuple(s for _, s in outs)
        return dist, values, new if self.separate_critic else new[0]

    def forward(self, inputs: torch.Tensor, state: Any = None):
        """``(dist, values, new_state)`` for a sequence ``[B, L, input_dim]``."""
        return self._run(self.features, inputs, state)

    def step(self, inputs: torch.Tensor, state: Any):
        """One step ``[B, input_dim]``: ``(dist, value, new_state)``."""
        return self._run(self._step_features, inputs, state)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def select_state(new: Any, old: Any, keep_new: torch.Tensor) -> Any:
    """Per trial, the new recurrent state where ``keep_new`` else the old one."""
    if isinstance(new, KVCache):  # the step's slot belongs only to the trials that took it
        valid = new.valid.clone()
        valid[:, new.used - 1] &= keep_new
        return new._replace(valid=valid)
    if isinstance(new, tuple):
        return tuple(select_state(n, o, keep_new) for n, o in zip(new, old, strict=True))
    if new.dim() == 3 and new.shape[1] == keep_new.shape[0]:  # [layers, B, H]
        return torch.where(keep_new.view(1, -1, 1), new, old)
    return new


def describe(policy: SequencePolicy) -> dict[str, Any]:
    """JSON-ready architecture (checked when loading a checkpoint)."""
    return {
        "kind": policy.kind,
        "hidden": policy.hidden,
        "obs_dim": policy.obs_dim,
        "action_dim": policy.action_dim,
        "discrete": policy.discrete,
        "max_len": policy.max_len,
        # only when set, so checkpoints from before the option still match
        **({"time_inputs": True} if policy.time_inputs else {}),
        **({"separate_critic": True} if policy.separate_critic else {}),
        **({"prev_obs_inputs": True} if policy.prev_obs_inputs else {}),
    }
