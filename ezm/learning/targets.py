"""Reanalyze: fresh policy and value targets for a sampled batch, all batched.

Every state at unroll positions 0..U of every sampled sequence is searched again with the
target model (full reanalyze). Value targets are n-step TD returns bootstrapped from the
target model, cut at true terminations and never at time-limit truncations, mixed with the
search's root value by the ensemble-variance rule of the paper (or the release's age rule).

Shapes: B sequences, S = U + n + 1 rows per sequence, U unroll steps, n TD steps,
K root candidates, A padded action size, V value heads, T tasks.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from ezm.config import Config
from ezm.model import Inference, WorldModel
from ezm.replay.buffer import Batch
from ezm.search import search_from_root, value_of


class Targets(NamedTuple):
    value: torch.Tensor  # [B, U+1] mixed value target of every unroll position
    td_value: torch.Tensor  # [B, U+1] n-step TD target
    search_value: torch.Tensor  # [B, U+1] root value of the reanalyze search
    candidates: torch.Tensor  # [B, U+1, K, A] reanalyze root candidates
    improved_policy: torch.Tensor  # [B, U+1, K] improved policy over them
    action: torch.Tensor  # [B, U+1, A] action chosen by the reanalyze search
    value_mask: torch.Tensor  # [B, U+1] position holds a state of the sampled episode
    reward_mask: torch.Tensor  # [B, U] an action was taken at that position
    alpha: torch.Tensor  # [B, U+1] weight of the TD target in the mix


class VarianceRange:
    """Running per-task extremes of the value-ensemble variance (for the mixing alpha).

    The extremes follow each batch's per-task minimum and maximum as exponential moving
    averages (rate `rate`), so that the huge disagreement of an untrained ensemble does not
    pin alpha near 0 for the rest of training.
    """

    def __init__(self, num_tasks: int, device: torch.device | str, rate: float = 0.01):
        self.rate = rate
        self.low = torch.full((num_tasks,), float("nan"), device=device)  # [T]
        self.high = torch.full((num_tasks,), float("nan"), device=device)  # [T]

    def update(self, variance: torch.Tensor, task: torch.Tensor, mask: torch.Tensor) -> None:
        """Fold the variances [B, P] of rows of tasks [B] (mask [B, P]) into the extremes."""
        per_row = task[:, None].expand_as(variance)[mask]  # [M]
        values = variance[mask]  # [M]
        low = torch.full_like(self.low, float("inf")).scatter_reduce(0, per_row, values, reduce="amin")
        high = torch.full_like(self.high, float("-inf")).scatter_reduce(0, per_row, values, reduce="amax")
        seen = torch.isfinite(low)  # [T] tasks present in this batch
        fresh = seen & torch.isnan(self.low)  # [T] seen for the first time: start at the batch's extremes
        self.low = torch.where(fresh, low, torch.where(seen, torch.lerp(self.low, low, self.rate), self.low))
        self.high = torch.where(fresh, high, torch.where(seen, torch.lerp(self.high, high, self.rate), self.high))

    def alpha(self, variance: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        low, high = self.low[task][:, None], self.high[task][:, None]  # [B, 1]
        return ((variance - low) / (high - low).clamp_min(1e-8)).clamp(0.0, 1.0).nan_to_num(1.0)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"low": self.low.cpu(), "high": self.high.cpu()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.low = state["low"].to(self.low.device)
        self.high = state["high"].to(self.high.device)


def acted_rows(valid: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """[B, S] rows whose action and outcome are known: in the start's episode, not its final
    state, and followed by a stored row (the newest row of an open episode has no successor yet)."""
    has_next = torch.cat([valid[:, 1:], torch.zeros_like(valid[:, :1])], dim=1)  # [B, S]
    return valid & ~last & has_next


def td_targets(reward: torch.Tensor, terminal: torch.Tensor, valid: torch.Tensor, last: torch.Tensor,
               bootstrap: torch.Tensor, unroll: int, td_steps: int, discount: float) -> torch.Tensor:
    """n-step TD targets [B, U+1] from rows [B, S] and bootstrap values [B, S].

    The return of position k sums the rewards of the action rows k..e-1 with
    e = k + (number of action rows among the next n) and adds gamma^(e-k) * v(s_e), unless
    s_e is the final state of an episode that ended in a true termination. An episode still
    open at its newest row bootstraps from that row.
    """
    if reward.shape[1] < unroll + td_steps + 1:
        raise ValueError(f"sequences of {reward.shape[1]} rows are too short for U={unroll}, n={td_steps}")
    acted = acted_rows(valid, last)  # [B, S]
    positions = torch.arange(unroll + 1, device=reward.device)  # [U+1]
    offsets = torch.arange(td_steps, device=reward.device)  # [n]
    window = positions[:, None] + offsets[None, :]  # [U+1, n] row indices
    acted_w = acted[:, window]  # [B, U+1, n]
    discounts = discount ** offsets.to(reward.dtype)  # [n]
    returns = (reward[:, window] * acted_w * discounts).sum(-1)  # [B, U+1]
    steps = acted_w.sum(-1)  # [B, U+1] action rows counted (contiguous from k)
    end = positions[None, :] + steps  # [B, U+1] bootstrap row e
    # the start row always holds an action, so end - 1 >= 0 wherever end is the final state
    ended_by_termination = last.gather(1, end) & terminal.gather(1, (end - 1).clamp_min(0))
    use_bootstrap = valid.gather(1, end) & ~ended_by_termination  # [B, U+1]
    tail = discount ** steps.to(reward.dtype) * bootstrap.gather(1, end)  # [B, U+1]
    return returns + torch.where(use_bootstrap, tail, torch.zeros_like(tail))


@torch.no_grad()
def reanalyze(target_model: WorldModel, batch: Batch, cfg: Config, variance_range: VarianceRange,
              generator: torch.Generator, updates: int, env_step: int) -> Targets:
    """Search every unroll position again with the target model and build the targets."""
    unroll, n = cfg.learn.unroll, cfg.learn.td_steps
    obs = batch.obs  # [B, S, O]
    b, s, o = obs.shape
    task_rows = batch.task[:, None].expand(b, s).reshape(-1)  # [B*S]
    root = target_model.initial(obs.reshape(b * s, o), task_rows)  # Inference over [B*S]
    values = root.values.view(b, s, -1)  # [B, S, V]
    if cfg.learn.td_bootstrap == "mean":  # unbiased: the TD target takes no max, so needs no pessimism
        bootstrap = values.mean(-1)  # [B, S]
    else:  # the release: the search's minimum over randomly drawn heads, whose bias compounds with every backup
        draws = torch.rand(b * s, values.shape[-1], generator=generator, device=generator.device)  # [B*S, V]
        bootstrap = value_of(values.reshape(b * s, -1), draws.to(obs.device), cfg.search.value_min_heads).view(b, s)
    td = td_targets(batch.reward, batch.terminal, batch.valid, batch.last, bootstrap,
                    unroll, n, cfg.decision_discount)  # [B, U+1]

    p = unroll + 1
    positions = torch.arange(b * s, device=obs.device).view(b, s)[:, :p].reshape(-1)  # [B*P]
    root_p = Inference(*(field[positions] for field in root))
    task_p = task_rows[positions]  # [B*P]
    mask_p = target_model.task_action_mask[task_p]  # [B*P, A]
    search_cfg = cfg.search.for_reanalyze(cfg.learn.reanalyze_simulations)
    searched = search_from_root(target_model, root_p, task_p, mask_p, search_cfg, cfg.decision_discount,
                                generator, add_noise=False)
    search_value = searched.root_value.view(b, p)  # [B, P]

    value_mask = batch.valid[:, :p]  # [B, P]
    variance = values[:, :p].var(dim=-1)  # [B, P] disagreement of the ensemble
    if cfg.learn.value_target == "mixed":
        variance_range.update(variance, batch.task, value_mask)
        alpha = variance_range.alpha(variance, batch.task)
    elif cfg.learn.value_target == "rule":
        age = env_step - batch.env_step  # [B] env steps since the start row was written
        stale = (updates >= cfg.learn.rule_switch_updates) & (age > cfg.learn.rule_age)
        alpha = (~stale).to(td.dtype)[:, None].expand(b, p)
    else:
        alpha = torch.ones_like(td)
    value = alpha * td + (1 - alpha) * search_value
    # a terminal state is worth exactly 0, whatever the model says
    terminal_state = batch.last[:, :p] & torch.cat(
        [torch.zeros_like(batch.terminal[:, :1]), batch.terminal[:, : p - 1]], dim=1)
    value = value.masked_fill(terminal_state, 0.0)
    return Targets(
        value=value, td_value=td, search_value=search_value,
        candidates=searched.candidates.view(b, p, *searched.candidates.shape[1:]),
        improved_policy=searched.improved_policy.view(b, p, -1),
        action=searched.action.view(b, p, -1),
        value_mask=value_mask,
        reward_mask=acted_rows(batch.valid, batch.last)[:, :unroll],
        alpha=alpha,
    )
