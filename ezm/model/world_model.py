"""The EZ-M world model: six learned functions conditioned on a task embedding (spec section 2).

    h  = H(s, e)      representation of the zero-padded observation
    u  = U(a, e)      action encoder (feeds the reward path)
    h' = G(h, a, e)   dynamics
    r  = R(h, u, e)   reward, a path parallel to G that reads the current latent
    v  = V(h, e)      value: `value_heads` categorical heads over one trunk
    p  = P(h, e)      policy: a tanh-squashed Gaussian over the task's valid action dims (see policy.py)

plus the SimSiam projector and predictor of the consistency loss. Observations are
standardised per task by running statistics (`normalizer.py`, `cfg.normalize_obs`) before H;
the learner updates them from its batches. `e` is the task embedding
(nn.Embedding with max_norm=1, which renormalises the looked-up rows of its weight in place
on every forward); each injection point is switched by `cfg.te_*`, and when a switch is off
that input is absent (the layer's input shrinks by the embedding size; `te_reward` covers
both U and R, the two parts of the reward path).

Latent normalisation: the representation starts as EfficientZero-V2's does (Linear,
LayerNorm, Tanh, then pre-LN residual blocks), and both the representation and the dynamics
end in a parameter-free LayerNorm, so every latent, observed or imagined, has zero mean and
unit variance over its features and an unroll cannot drift in scale.

Value and policy share one trunk (the "value-policy" module). The reward, value and policy
heads contain BatchNorm (train mode: batch statistics, needs >= 2 rows, rows influence each
other, running statistics update; eval mode: running statistics, rows independent). Act,
search and reanalyse in eval mode.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ezm.config import ModelConfig
from ezm.model.networks import FusedInput, ValueEnsemble, head, norm_mlp, residual_tower
from ezm.model.normalizer import ObservationNorm
from ezm.model.policy import gaussian, raw_log_std
from ezm.model.support import Support


class Inference(NamedTuple):
    """What the search consumes: decoded scalars."""

    latent: Tensor  # [B, H]
    reward: Tensor  # [B] decoded reward of the transition into `latent` (zeros for initial)
    values: Tensor  # [B, V] decoded value of every ensemble head ([B, m] of the heads asked for)
    loc: Tensor  # [B, A] pre-tanh policy location (the action tanh(loc)), exactly 0 on masked dims
    std: Tensor  # [B, A] pre-tanh policy std, exp(policy.LOG_STD_MIN) on masked dims


class Prediction(NamedTuple):
    """What the learner consumes: logits."""

    latent: Tensor  # [B, H]
    reward_logits: Tensor  # [B, bins] (zeros for initial)
    value_logits: Tensor  # [B, V, bins] ([B, m, bins] of the heads asked for)
    loc: Tensor  # [B, A]
    std: Tensor  # [B, A]


def _cat(*parts: Tensor | None) -> Tensor:
    """Concatenate the present inputs along the feature axis."""
    return torch.cat([p for p in parts if p is not None], dim=-1)


def _normalize_latent(x: Tensor) -> Tensor:
    return F.layer_norm(x, x.shape[-1:])  # [B, H], zero mean and unit variance per row


class Representation(nn.Module):
    """H(s, e): [B, O] (+ [B, E]) -> [B, H]."""

    def __init__(self, in_size: int, hidden: int, blocks: int):
        super().__init__()
        self.input = nn.Linear(in_size, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.tower = residual_tower(hidden, blocks)

    def forward(self, obs: Tensor, embedding: Tensor | None) -> Tensor:
        x = torch.tanh(self.norm(self.input(_cat(obs, embedding))))  # [B, H]
        return _normalize_latent(self.tower(x))


class ActionEncoder(nn.Module):
    """U(a, e): [B, A] (+ [B, E]) -> [B, U], Linear + LayerNorm + Tanh."""

    def __init__(self, in_size: int, out_size: int):
        super().__init__()
        self.input = nn.Linear(in_size, out_size)
        self.norm = nn.LayerNorm(out_size)

    def forward(self, action: Tensor, embedding: Tensor | None) -> Tensor:
        return torch.tanh(self.norm(self.input(_cat(action, embedding))))  # [B, U]


class Dynamics(nn.Module):
    """G(h, a, e): [B, H], [B, A] (+ [B, E]) -> [B, H]."""

    def __init__(self, in_size: int, hidden: int, blocks: int):
        super().__init__()
        self.input = FusedInput(in_size, hidden)
        self.tower = residual_tower(hidden, blocks)

    def forward(self, latent: Tensor, action: Tensor, embedding: Tensor | None) -> Tensor:
        x = self.input(latent, _cat(latent, action, embedding))  # [B, H]
        return _normalize_latent(self.tower(x))


class Reward(nn.Module):
    """R(h, u, e): [B, H], [B, U] (+ [B, E]) -> reward logits [B, bins].

    The last layer starts at zero, so the first predictions are the support's centre.
    """

    def __init__(self, in_size: int, hidden: int, blocks: int, head_hidden: int, bins: int):
        super().__init__()
        self.input = FusedInput(in_size, hidden)
        self.tower = residual_tower(hidden, blocks)
        self.norm = nn.LayerNorm(hidden)
        self.head = head(hidden, head_hidden, bins)
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, latent: Tensor, encoded_action: Tensor, embedding: Tensor | None) -> Tensor:
        x = self.input(latent, _cat(latent, encoded_action, embedding))  # [B, H]
        return self.head(self.norm(self.tower(x)))  # [B, bins]


class ValuePolicy(nn.Module):
    """V(h, e) and P(h, e): one residual trunk on [h, e], value heads and a policy head."""

    def __init__(self, width: int, blocks: int, head_hidden: int, bins: int, heads: int,
                 dropout: float, action_size: int, init_std: float, log_std_min: float):
        super().__init__()
        self.tower = residual_tower(width, blocks)
        self.norm = nn.LayerNorm(width)
        self.value_heads = ValueEnsemble(width, head_hidden, bins, heads, dropout)
        self.policy_head = head(width, head_hidden, 2 * action_size)
        last = self.policy_head[-1]
        nn.init.uniform_(last.weight, -1e-3, 1e-3)  # the untrained policy: loc ~0, std ~init_std
        nn.init.zeros_(last.bias)
        nn.init.constant_(last.bias[action_size:], raw_log_std(init_std, log_std_min))
        self.log_std_min = log_std_min

    def trunk(self, latent: Tensor, embedding: Tensor | None) -> Tensor:
        return self.norm(self.tower(_cat(latent, embedding)))  # [B, W]

    def values(self, features: Tensor, heads: Tensor | None = None) -> Tensor:
        """Logits [B, V, bins] of every head, or [B, m, bins] of the heads [B, m] (long) each row
        asks for, every head run on only the rows that ask for it (inference: eval mode)."""
        if heads is None:
            return self.value_heads(features)  # [B, V, bins]
        picked = [(heads == h).nonzero(as_tuple=True) for h in range(self.value_heads.heads)]  # ([R], [R]) per head
        outputs = [self.value_heads.head(h, features[row]) for h, (row, _) in enumerate(picked)]  # [R, bins] each
        logits = outputs[0].new_empty(*heads.shape, outputs[0].shape[-1])  # [B, m, bins], autocast's dtype
        for (row, slot), out in zip(picked, outputs):
            logits[row, slot] = out
        return logits

    def policy(self, features: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        return gaussian(self.policy_head(features), mask, self.log_std_min)  # [B, A], [B, A]


class WorldModel(nn.Module):
    """The whole model; every input tensor is batched over roots/sequences B.

    obs [B, O] float (zero-padded), task [B] long, action [B, A] float (padded, masked dims 0;
    the model multiplies by the task's mask again), latent [B, H]. No method turns off
    gradients: the caller wraps acting and targets in torch.no_grad().
    """

    def __init__(self, cfg: ModelConfig, num_tasks: int, obs_size: int, action_size: int,
                 task_action_mask: Tensor):
        super().__init__()
        if tuple(task_action_mask.shape) != (num_tasks, action_size):
            raise ValueError(f"task_action_mask must be [{num_tasks}, {action_size}], "
                             f"got {list(task_action_mask.shape)}")
        self.cfg = cfg
        self.register_buffer("task_action_mask", task_action_mask.float())  # [T, A] 0/1
        E, H, bins = cfg.task_embedding_dim, cfg.hidden, cfg.support_bins

        def size(on: bool) -> int:
            return E if on else 0

        self.task_embedding = nn.Embedding(num_tasks, E, max_norm=1.0)
        self.obs_norm = ObservationNorm(num_tasks, obs_size) if cfg.normalize_obs else None
        self.representation = Representation(obs_size + size(cfg.te_representation), H, cfg.blocks)
        self.action_encoder = ActionEncoder(action_size + size(cfg.te_reward), cfg.action_embedding_dim)
        self.dynamics = Dynamics(H + action_size + size(cfg.te_dynamics), H, cfg.blocks)
        self.reward = Reward(H + cfg.action_embedding_dim + size(cfg.te_reward), H, cfg.blocks,
                             cfg.head_hidden, bins)
        self.value_policy = ValuePolicy(H + size(cfg.te_value_policy), cfg.blocks, cfg.head_hidden,
                                        bins, cfg.value_heads, cfg.dropout, action_size,
                                        cfg.policy_init_std, cfg.policy_log_std_min)
        self.projector = norm_mlp([H, cfg.projector_hidden, cfg.projector_hidden, cfg.projector_out])
        self.predictor = norm_mlp([cfg.projector_out, cfg.predictor_hidden, cfg.projector_out])
        self.reward_support = Support(*cfg.reward_range, bins)
        self.value_support = Support(*cfg.value_range, bins)

    # -- the learner's interface: logits -------------------------------------------------

    def represent(self, obs: Tensor, task: Tensor) -> Tensor:
        """H(s, e): the latent [B, H] of observations obs [B, O] (consistency targets)."""
        if self.obs_norm is not None:
            obs = self.obs_norm(obs, task)
        return self.representation(obs, self._te(self.task_embedding(task), self.cfg.te_representation))

    def initial_logits(self, obs: Tensor, task: Tensor) -> Prediction:
        embedding = self.task_embedding(task)  # [B, E]
        latent = self.represent(obs, task)  # [B, H]
        reward_logits = obs.new_zeros(obs.shape[0], self.cfg.support_bins)  # [B, bins]
        return Prediction(latent, reward_logits, *self._value_policy(latent, embedding, task))

    def recurrent_logits(self, latent: Tensor, action: Tensor, task: Tensor,
                         heads: Tensor | None = None) -> Prediction:
        embedding = self.task_embedding(task)  # [B, E]
        action = action * self.task_action_mask[task].to(action.dtype)  # [B, A]
        reward_logits = self._reward(latent, action, embedding)  # [B, bins]
        next_latent = self.dynamics(latent, action, self._te(embedding, self.cfg.te_dynamics))  # [B, H]
        return Prediction(next_latent, reward_logits, *self._value_policy(next_latent, embedding, task, heads))

    def value_logits(self, latent: Tensor, task: Tensor) -> Tensor:
        """[B, V, bins] for every ensemble head (path consistency, targets)."""
        embedding = self._te(self.task_embedding(task), self.cfg.te_value_policy)
        return self.value_policy.values(self.value_policy.trunk(latent, embedding))

    def reward_logits(self, latent: Tensor, action: Tensor, task: Tensor) -> Tensor:
        """[B, bins] for the transition from `latent` under `action`."""
        action = action * self.task_action_mask[task].to(action.dtype)  # [B, A]
        return self._reward(latent, action, self.task_embedding(task))

    def project(self, latent: Tensor) -> Tensor:
        return self.projector(latent)  # [B, P]

    def predict(self, projection: Tensor) -> Tensor:
        return self.predictor(projection)  # [B, P]

    # -- the search's interface: decoded scalars -----------------------------------------

    def initial(self, obs: Tensor, task: Tensor) -> Inference:
        out = self.initial_logits(obs, task)
        reward = obs.new_zeros(obs.shape[0])  # [B]
        return Inference(out.latent, reward, self.value_support.decode(out.value_logits), out.loc, out.std)

    def recurrent(self, latent: Tensor, action: Tensor, task: Tensor, heads: Tensor | None = None) -> Inference:
        """One imagined step. With heads [B, m] (long), `values` is [B, m]: only the value heads
        each row's search reads are computed (the search's minimum over m of V heads)."""
        out = self.recurrent_logits(latent, action, task, heads)
        reward = self.reward_support.decode(out.reward_logits)  # [B]
        return Inference(out.latent, reward, self.value_support.decode(out.value_logits), out.loc, out.std)

    # -- shared pieces --------------------------------------------------------------------

    @staticmethod
    def _te(embedding: Tensor, on: bool) -> Tensor | None:
        return embedding if on else None

    def _reward(self, latent: Tensor, action: Tensor, embedding: Tensor) -> Tensor:
        embedding = self._te(embedding, self.cfg.te_reward)
        return self.reward(latent, self.action_encoder(action, embedding), embedding)  # [B, bins]

    def _value_policy(self, latent: Tensor, embedding: Tensor, task: Tensor,
                      heads: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        features = self.value_policy.trunk(latent, self._te(embedding, self.cfg.te_value_policy))  # [B, W]
        loc, std = self.value_policy.policy(features, self.task_action_mask[task])  # [B, A] each
        return self.value_policy.values(features, heads), loc, std
