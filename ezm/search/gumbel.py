"""Sampled Gumbel search for continuous actions (spec section 4), and its discrete twin.

Both modes run the same tree functions (`ezm.search.tree`); they differ in where a node's child
candidates come from and in how q is normalised:

- continuous (`search`, `search_from_root`): the root samples K candidates from its policy
  (root_policy_samples as tanh of N(loc, sigma), the rest of N(loc, root_widen * sigma), of
  which the last U = floor(root_uniform * K) (at most K - 1) are instead uniform over
  [-0.999, 0.999] in every valid dim), every
  expanded node samples C = child_actions from its own squashed N(loc, sigma); all clipped to
  [-0.999, 0.999] with masked dims exactly 0; prior logits uniform (the candidates are already
  samples of the policy, as in the EZ-M release); q normalised over the tree's backed-up
  returns (EfficientZero-V2's MinMaxStats, gap floored at 0.01).
- discrete (`search_discrete`): one fixed candidate set [B, K, A] is the child set of every
  node, prior logits come from the model (`Inference.logits`, [B, K]); q normalised per node.
  This is mctx's `gumbel_muzero_policy` with `qtransform_completed_by_mix_value`.

The model: `initial(obs, task)` and `recurrent(latent, action, task, heads)` return an
`Inference` (or, discrete, one with `logits`); `heads` [B, m] long (or None: every head) names
the value heads of each row whose values [B, m] the search reads, so a model may skip the rest.

Randomness: every draw of root b is a hash of keys[b] (`ezm.search.rng`), so batching roots
changes no result and CPU and CUDA draw the same numbers. Without explicit `keys` they are
drawn from the torch.Generator.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import torch
from torch import Tensor

from ezm.config import SearchConfig
from ezm.model.policy import squash
from ezm.search import rng
from ezm.search.tree import (Rules, Tree, backup, considered_visits, discount_matrix, expand, new_tree,
                             node_view, root_scores, simulate)

if TYPE_CHECKING:
    from ezm.model import Inference

# streams of the per-root random numbers
_ROOT_NOISE, _GUMBEL, _CHILD_NOISE, _HEADS, _ROOT_UNIFORM = range(5)


class SearchOutput(NamedTuple):
    action: Tensor  # [B, A] chosen action (masked dims exactly 0)
    candidates: Tensor  # [B, K, A] root candidates
    improved_policy: Tensor  # [B, K] softmax(logits + sigma(completed q))
    root_value: Tensor  # [B] mean of backed-up values at the root (its own network value counts once)
    visits: Tensor  # [B, K] root child visit counts


def chosen_heads(draws: Tensor, heads: int) -> Tensor | None:
    """[B, heads] the value heads a row reads, a random subset picked by the uniforms `draws` [B, V];
    None when it reads every head (V <= heads)."""
    if draws.shape[1] <= heads:
        return None
    return draws.topk(heads, -1, largest=False).indices


def value_of(values: Tensor, draws: Tensor, heads: int) -> Tensor:
    """[B] minimum over `heads` value heads of [B, V], chosen per row by the uniforms `draws` [B, V]."""
    chosen = chosen_heads(draws, heads)
    return (values if chosen is None else values.gather(1, chosen)).amin(-1)


def head_draws(keys: Tensor, cfg: SearchConfig, heads: int, dtype: torch.dtype) -> Tensor:
    """[B, n + 1, V] uniforms that pick the value heads of the root (0) and of the node of each
    simulation: a fresh draw at every node, as in the release (benchmarks/value_head_noise.py
    measures how often the draw decides the best candidate)."""
    return rng.uniform(keys, _HEADS, (cfg.simulations + 1, heads), dtype)


def sample_actions(loc: Tensor, std: Tensor, noise: Tensor, valid: Tensor) -> Tensor:
    """[B, C, A] clip(tanh(loc + std * noise), +-0.999), 0 on invalid dims; loc, std [B, 1 or C, A]."""
    actions = squash(loc + std * noise)  # [B, C, A]
    return torch.where(valid[:, None], actions, 0)


def _run(model: Any, task: Tensor, latent: Tensor, value: Tensor, logits: Tensor, candidates: Tensor,
         gumbel: Tensor, children: Callable[[Any, int], tuple[Tensor, Tensor]], child_width: int,
         draws: Tensor, cfg: SearchConfig, discount: float, per_node_norm: bool) -> tuple[SearchOutput, Tree]:
    """The simulation loop shared by both modes; `children(inference, sim)` -> (logits [B, C], actions [B, C, A]).

    One batched model call per simulation, which computes only the value heads the leaf's
    minimum reads (`chosen_heads`); the only host read of the loop is the depth of the deepest
    leaf (once per simulation), which bounds the next descent (the model's head selection reads
    its row counts, once per head).
    """
    batch, width = logits.shape
    rules = Rules(discount, cfg.c_visit, cfg.c_scale, per_node_norm, considered_visits(width, cfg.simulations))
    tree = new_tree(latent, value, logits, candidates, cfg.simulations)
    rows = torch.arange(batch, device=value.device)  # [B]
    discounts = discount_matrix(cfg.simulations + 2, discount, value.dtype, value.device)  # [n + 2, n + 2]
    deepest = 0
    for sim in range(cfg.simulations):
        selected = simulate(tree, gumbel, sim, deepest, child_width, rules)
        parent_latent = tree.latents[rows, selected.parent]  # [B, H]
        action = tree.actions[rows, selected.parent, selected.slot]  # [B, A]
        out = model.recurrent(parent_latent, action, task, chosen_heads(draws[:, sim + 1], cfg.value_min_heads))
        leaf_value = out.values.amin(-1)  # [B] minimum over the drawn heads
        child_logits, child_actions = children(out, sim)
        expand(tree, rows, selected, sim + 1, out.latent, out.reward, leaf_value, child_logits, child_actions)
        backup(tree, selected, leaf_value, discounts, not per_node_norm)
        deepest = max(deepest, int(selected.length.max()))
    visits, prior, sigma = node_view(tree, rows, torch.zeros_like(rows), width, rules)  # [B, K] each
    best = root_scores(gumbel, prior, sigma, visits, visits.amax(-1, keepdim=True)).argmax(-1)  # [B]
    output = SearchOutput(action=candidates[rows, best], candidates=candidates,
                          improved_policy=torch.softmax(prior + sigma, -1), root_value=tree.values[:, 0],
                          visits=visits)
    return output, tree


@torch.no_grad()
def search_with_tree(model: Any, root: Inference, task: Tensor, action_mask: Tensor, cfg: SearchConfig,
                     discount: float, generator: torch.Generator | None, add_noise: bool,
                     keys: Tensor | None = None) -> tuple[SearchOutput, Tree]:
    """Continuous search from a precomputed root inference; also returns the tree.

    root: `Inference` of B roots (latent [B, H], values [B, V], loc and std [B, A]);
    task [B] long; action_mask [B, A] (1 = valid dim); keys [B] int64 per-root random keys
    (drawn from `generator` when None). Noise off: no Gumbel; candidates are still sampled.
    """
    batch, dims = root.loc.shape
    dtype, device = root.loc.dtype, root.loc.device
    keys = rng.keys_from(generator, batch, device) if keys is None else keys
    k, c, n = cfg.root_actions, cfg.child_actions, cfg.simulations
    valid = action_mask.bool()  # [B, A]
    widen = torch.full((k, 1), cfg.root_widen, dtype=dtype, device=device)  # [K, 1]
    widen[: cfg.root_policy_samples] = 1.0
    noise = rng.normal(keys, _ROOT_NOISE, (k, dims), dtype)  # [B, K, A]
    candidates = sample_actions(root.loc[:, None], root.std[:, None] * widen, noise, valid)  # [B, K, A]
    uniform = min(math.floor(cfg.root_uniform * k), k - 1)
    if uniform > 0:  # the last U candidates cover the action box, whatever the policy proposes
        box = 0.999 * (2.0 * rng.uniform(keys, _ROOT_UNIFORM, (uniform, dims), dtype) - 1.0)  # [B, U, A]
        candidates = torch.cat([candidates[:, : k - uniform], torch.where(valid[:, None], box, 0)], 1)
    if add_noise:
        gumbel = cfg.gumbel_scale * rng.gumbel(keys, _GUMBEL, (k,), dtype)  # [B, K]
    else:
        gumbel = torch.zeros(batch, k, dtype=dtype, device=device)  # [B, K]
    child_noise = rng.normal(keys, _CHILD_NOISE, (n, c, dims), dtype)  # [B, n, C, A]
    draws = head_draws(keys, cfg, root.values.shape[1], dtype)  # [B, n + 1, V]
    uniform = torch.zeros(batch, c, dtype=dtype, device=device)  # [B, C] prior logits of sampled children

    def children(out: Inference, sim: int) -> tuple[Tensor, Tensor]:
        actions = sample_actions(out.loc[:, None], out.std[:, None], child_noise[:, sim], valid)
        return uniform, actions

    value = value_of(root.values, draws[:, 0], cfg.value_min_heads)  # [B]
    logits = torch.zeros(batch, k, dtype=dtype, device=device)  # [B, K] uniform prior over the candidates
    return _run(model, task, root.latent, value, logits, candidates, gumbel, children, c, draws, cfg, discount,
                per_node_norm=False)


def search_from_root(model: Any, root: Inference, task: Tensor, action_mask: Tensor, cfg: SearchConfig,
                     discount: float, generator: torch.Generator | None, add_noise: bool,
                     keys: Tensor | None = None) -> SearchOutput:
    """Continuous search from a precomputed root inference (reanalyze passes the target model's)."""
    return search_with_tree(model, root, task, action_mask, cfg, discount, generator, add_noise, keys)[0]


@torch.no_grad()
def search(model: Any, obs: Tensor, task: Tensor, action_mask: Tensor, cfg: SearchConfig, discount: float,
           generator: torch.Generator | None, add_noise: bool, keys: Tensor | None = None) -> SearchOutput:
    """Continuous search from observations obs [B, O] of tasks task [B]; see `search_with_tree`."""
    root = model.initial(obs, task)
    return search_from_root(model, root, task, action_mask, cfg, discount, generator, add_noise, keys)


@torch.no_grad()
def search_discrete(model: Any, root: Any, candidates: Tensor, task: Tensor, gumbel: Tensor, cfg: SearchConfig,
                    discount: float, generator: torch.Generator | None, keys: Tensor | None = None) -> SearchOutput:
    """mctx's `gumbel_muzero_policy` over one fixed candidate set [B, K, A] shared by every node.

    root and every `model.recurrent` output carry `logits` [B, K] (prior over the candidates)
    besides latent, reward and values; gumbel [B, K] is the already-scaled root noise. The
    considered count m is K, the q transform `qtransform_completed_by_mix_value` with
    c_visit = maxvisit_init and c_scale = value_scale. keys (or `generator`) only pick value heads.
    """
    batch, width = root.logits.shape
    keys = rng.keys_from(generator, batch, root.latent.device) if keys is None else keys
    draws = head_draws(keys, cfg, root.values.shape[1], root.values.dtype)  # [B, n + 1, V]

    def children(out: Any, sim: int) -> tuple[Tensor, Tensor]:
        return out.logits, candidates

    value = value_of(root.values, draws[:, 0], cfg.value_min_heads)  # [B]
    return _run(model, task, root.latent, value, root.logits, candidates, gumbel, children, width, draws,
                cfg, discount, per_node_norm=True)[0]
