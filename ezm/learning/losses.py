"""The EZ-M losses over U unroll steps (paper eqs. 7-9), computed for a batch mixing tasks.

Per row: reward cross-entropy, value cross-entropy on every ensemble head, policy MLE of the
searched action (with `learn.policy_target=improved_1d`, EfficientZero-V2's DMC rule, the
cross-entropy with the improved policy over the candidates for 1-D action tasks; with `improved`,
for every task; with `action`, the EZ-M release's rule, for none), entropy bonus,
SimSiam temporal consistency and path consistency. Row losses are weighted by the replay importance weights, averaged within
each task and summed over tasks (a task's share of the batch may be one row more or less than
another's).

Shapes: B rows, U unroll steps, P = U + 1 positions, K candidates, A actions, V heads.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from ezm.config import Config
from ezm.learning.targets import Targets
from ezm.model import WorldModel
from ezm.model.policy import entropy, log_prob
from ezm.replay.buffer import Batch


class LossOutput(NamedTuple):
    total: torch.Tensor  # [] weighted sum that is back-propagated
    parts: dict[str, torch.Tensor]  # [] each loss term before its coefficient (detached)
    priority: torch.Tensor  # [B] new replay priority: |value prediction - target| at position 0
    policy_std: torch.Tensor  # [B] pre-tanh policy std at position 0, averaged over the task's action dims
    ensemble_std: torch.Tensor  # [B] std across the value heads' predictions at position 0


def _scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    return x * scale + x.detach() * (1 - scale)


def _cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """[..., bins] logits against [..., bins] target distributions -> [...]."""
    return -(target_probs * F.log_softmax(logits, dim=-1)).sum(-1)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-row mean of x [B, P] over the positions where mask [B, P] holds -> [B]."""
    mask = mask.to(x.dtype)
    return (x * mask).sum(1) / mask.sum(1).clamp_min(1.0)


def _policy_loss(loc: torch.Tensor, std: torch.Tensor, targets: Targets, mask: torch.Tensor,
                 improved: torch.Tensor | None) -> torch.Tensor:
    """[B, P]: -log p(searched action); CE with the improved policy on the rows `improved` [B] if given."""
    b, p, a = loc.shape
    k = targets.candidates.shape[2]
    mle = -log_prob(loc.reshape(b * p, a), std.reshape(b * p, a), targets.action.reshape(b * p, a),
                    mask.repeat_interleave(p, 0)).view(b, p)
    if improved is None:
        return mle
    cand_logp = log_prob(loc[:, :, None].expand(b, p, k, a).reshape(-1, a),
                         std[:, :, None].expand(b, p, k, a).reshape(-1, a),
                         targets.candidates.reshape(-1, a),
                         mask.repeat_interleave(p * k, 0)).view(b, p, k)
    full_ce = -(targets.improved_policy * cand_logp).sum(-1)  # [B, P]
    return torch.where(improved[:, None], full_ce, mle)


def improved_rows(policy_target: str, action_mask: torch.Tensor) -> torch.Tensor | None:
    """[B] rows whose policy is fitted by the CE with the improved policy (the rest by the MLE of
    the searched action), from their action masks [B, A]: "improved_1d" takes 1-D tasks (EfficientZero-V2),
    "improved" every task (a weighted fit to all root candidates), "action" none (None, the EZ-M release)."""
    if policy_target == "action":
        return None
    if policy_target == "improved_1d":
        return action_mask.sum(-1) == 1
    return torch.ones(action_mask.shape[0], dtype=torch.bool, device=action_mask.device)


def _sum_of_task_means(row_loss: torch.Tensor, task: torch.Tensor, num_tasks: int,
                      per_task: bool) -> torch.Tensor:
    """Paper eq. 9: the sum over tasks of each task's mean row loss [B] -> []. A pooled batch
    (the -IER ablation) has no per-task share: its mean is scaled by the number of tasks."""
    if not per_task:
        return row_loss.mean() * num_tasks
    rows = torch.bincount(task, minlength=num_tasks).to(row_loss.dtype)  # [T]
    return (row_loss / rows[task]).sum()


def compute_losses(model: WorldModel, batch: Batch, targets: Targets, cfg: Config,
                   num_tasks: int) -> LossOutput:
    learn = cfg.learn
    unroll = learn.unroll
    b = batch.obs.shape[0]
    task = batch.task  # [B]
    action_mask = model.task_action_mask[task]  # [B, A]
    improved = improved_rows(learn.policy_target, action_mask)  # [B] or None

    pred = model.initial_logits(batch.obs[:, 0], task)
    latents, value_logits, locs, stds, reward_logits = [pred.latent], [pred.value_logits], [pred.loc], [pred.std], []
    latent = pred.latent
    for k in range(unroll):
        step = model.recurrent_logits(latent, batch.action[:, k], task)
        latent = _scale_gradient(step.latent, learn.latent_grad_scale)
        latents.append(latent)
        value_logits.append(step.value_logits)
        locs.append(step.loc)
        stds.append(step.std)
        reward_logits.append(step.reward_logits)
    value_logits_t = torch.stack(value_logits, 1)  # [B, P, V, bins]
    reward_logits_t = torch.stack(reward_logits, 1)  # [B, U, bins]
    loc, std = torch.stack(locs, 1), torch.stack(stds, 1)  # [B, P, A] pre-tanh

    value_support, reward_support = model.value_support, model.reward_support
    value_target = value_support.two_hot(targets.value)  # [B, P, bins]
    value_ce = _cross_entropy(value_logits_t, value_target[:, :, None]).mean(-1)  # [B, P]
    reward_target = reward_support.two_hot(batch.reward[:, :unroll])  # [B, U, bins]
    reward_ce = _cross_entropy(reward_logits_t, reward_target)  # [B, U]
    policy = _policy_loss(loc, std, targets, action_mask, improved)  # [B, P]
    ent = entropy(loc.flatten(0, 1), std.flatten(0, 1), action_mask.repeat_interleave(unroll + 1, 0)).view(b, -1)

    with torch.no_grad():
        obs_next = batch.obs[:, 1: unroll + 1]  # [B, U, O]
        fresh = model.represent(obs_next.flatten(0, 1), task.repeat_interleave(unroll))  # [B*U, H]
        target_proj = model.project(fresh).view(b, unroll, -1)  # [B, U, proj]
    online = model.predict(model.project(torch.stack(latents[1:], 1).flatten(0, 1))).view(b, unroll, -1)
    consistency = -F.cosine_similarity(online, target_proj, dim=-1)  # [B, U]
    obs_valid = targets.value_mask[:, 1:]  # [B, U]

    parts = {
        "reward": _masked_mean(reward_ce, targets.reward_mask),
        "value": _masked_mean(value_ce, targets.value_mask),
        "policy": _masked_mean(policy, targets.value_mask),
        "entropy": _masked_mean(ent, targets.value_mask),
        "consistency": _masked_mean(consistency, obs_valid),
    }
    total = (learn.reward_coef * parts["reward"] + learn.value_coef * parts["value"]
             + learn.policy_coef * parts["policy"] - learn.entropy_coef * parts["entropy"]
             + learn.consistency_coef * parts["consistency"])
    if learn.path_consistency:
        with torch.no_grad():
            reward_hat = reward_support.decode(reward_logits_t)  # [B, U]
            value_next = value_support.decode(value_logits_t[:, 1:]).mean(-1)  # [B, U]
            path_target = value_support.two_hot(reward_hat + cfg.decision_discount * value_next)  # [B, U, bins]
        path = _cross_entropy(value_logits_t[:, :unroll], path_target[:, :, None]).mean(-1)  # [B, U]
        parts["path"] = _masked_mean(path, targets.reward_mask)
        total = total + learn.path_coef * parts["path"]

    weighted = _sum_of_task_means(total * batch.weight, task, num_tasks, cfg.replay.independent)
    with torch.no_grad():
        heads_0 = value_support.decode(value_logits_t[:, 0])  # [B, V]
        priority = (heads_0.mean(-1) - targets.value[:, 0]).abs() + 1e-6
        policy_std = (std[:, 0] * action_mask).sum(-1) / action_mask.sum(-1)  # [B]
    return LossOutput(weighted, {k: v.detach().mean() for k, v in parts.items()}, priority,
                      policy_std, heads_0.std(-1))
