"""The search tree as preallocated arrays, and the pure functions that read and update it.

The layout is mctx's: B independent trees, N = simulations + 1 nodes each (node 0 is the root,
the node expanded by simulation s is node s + 1), W child slots per node. The root uses all W
slots (its K candidates); an interior node uses the first C <= W. Edge statistics are not
stored: the visit count, value and reward of edge (n, a) are those of its child node
`children[n, a]`, which equal mctx's `children_visits`, `children_values` and
`children_rewards`. Index 0 in `children` marks an unexpanded child (the root is nobody's child).

Selection descends all B trees at once, one depth per step; a backup is one scatter over the
[B, depth] node indices of the simulated paths.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor


class Rules(NamedTuple):
    """The constants of one search."""

    discount: float  # gamma of every edge
    c_visit: float  # sigma(q) = (c_visit + max N) * c_scale * q
    c_scale: float
    per_node_norm: bool  # True: mctx's min-max over a node's completed q; False: over the tree's returns
    considered: tuple[int, ...]  # [simulations] sequential-halving visit count considered at the root


class Tree(NamedTuple):
    visits: Tensor  # [B, N] visits of every node (value dtype; the leaf's own expansion counts one)
    raw_values: Tensor  # [B, N] network value of every node
    values: Tensor  # [B, N] mean of the values backed up through every node
    rewards: Tensor  # [B, N] reward of the transition into every node
    children: Tensor  # [B, N, W] node index of every child slot, 0 while unexpanded
    logits: Tensor  # [B, N, W] prior logits of the child slots
    actions: Tensor  # [B, N, W, A] action of every child slot
    latents: Tensor  # [B, N, H] latent state of every node
    q_min: Tensor  # [B] smallest backed-up return r + gamma * G of any edge so far
    q_max: Tensor  # [B] largest one


class Selected(NamedTuple):
    """The outcome of one descent: the edge to expand and the path leading to it."""

    parent: Tensor  # [B] node whose child slot is expanded
    slot: Tensor  # [B] that child slot
    path: Tensor  # [B, P] nodes from the root down to the new leaf, padded with the leaf index
    length: Tensor  # [B] depth of the new leaf = number of edges on the path


def considered_visits(m: int, simulations: int) -> tuple[int, ...]:
    """Sequential halving as a sequence of visit counts (mctx's `get_sequence_of_considered_visits`).

    Simulation s visits, among the root candidates that have exactly `sequence[s]` visits, the
    best by g + logits + sigma(q). Phases: every considered candidate gets
    max(1, floor(n / (ceil(log2 m) * considered))) visits, then the considered count halves
    (never below 2), until the budget is spent.
    """
    if m <= 1:
        return tuple(range(simulations))
    phases = math.ceil(math.log2(m))
    sequence: list[int] = []
    done = 0  # visits every still-considered candidate has
    considered = m
    while len(sequence) < simulations:
        rounds = max(1, int(simulations / (phases * considered)))
        for r in range(rounds):
            sequence.extend([done + r] * considered)
        done += rounds
        considered = max(2, considered // 2)
    return tuple(sequence[:simulations])


def new_tree(latent: Tensor, value: Tensor, logits: Tensor, actions: Tensor, simulations: int) -> Tree:
    """A tree holding only its root: latent [B, H], value [B], logits [B, W], actions [B, W, A]."""
    batch, width = logits.shape
    nodes = simulations + 1
    dtype, device = value.dtype, value.device
    tree = Tree(
        visits=torch.zeros(batch, nodes, dtype=dtype, device=device),  # [B, N]
        raw_values=torch.zeros(batch, nodes, dtype=dtype, device=device),  # [B, N]
        values=torch.zeros(batch, nodes, dtype=dtype, device=device),  # [B, N]
        rewards=torch.zeros(batch, nodes, dtype=dtype, device=device),  # [B, N]
        children=torch.zeros(batch, nodes, width, dtype=torch.int64, device=device),  # [B, N, W]
        logits=torch.zeros(batch, nodes, width, dtype=logits.dtype, device=device),  # [B, N, W]
        actions=torch.empty(batch, nodes, width, actions.shape[-1], dtype=actions.dtype, device=device),  # [B, N, W, A]
        latents=torch.empty(batch, nodes, latent.shape[-1], dtype=latent.dtype, device=device),  # [B, N, H]
        q_min=torch.full((batch,), math.inf, dtype=dtype, device=device),  # [B]
        q_max=torch.full((batch,), -math.inf, dtype=dtype, device=device),  # [B]
    )
    tree.visits[:, 0] = 1
    tree.raw_values[:, 0] = value
    tree.values[:, 0] = value
    tree.logits[:, 0] = logits
    tree.actions[:, 0] = actions
    tree.latents[:, 0] = latent
    return tree


def completed_q(visits: Tensor, q: Tensor, logits: Tensor, raw_value: Tensor) -> Tensor:
    """[B, C] Q of visited children; v_mix for the unvisited (mctx's mixed value).

    v_mix = (v_net + sum N * sum_visited pi Q / sum_visited pi) / (1 + sum N), pi = softmax(logits).
    """
    visited = visits > 0  # [B, C]
    probs = torch.softmax(logits, -1).clamp_min(torch.finfo(logits.dtype).tiny)  # [B, C]
    total = visits.sum(-1)  # [B]
    visited_mass = torch.where(visited, probs, 0).sum(-1, keepdim=True)  # [B, 1]
    weighted_q = torch.where(visited, probs * q / torch.where(visited, visited_mass, 1), 0).sum(-1)  # [B]
    mixed = (raw_value + total * weighted_q) / (total + 1)  # [B]
    return torch.where(visited, q, mixed[:, None])


def sigma_q(tree: Tree, visits: Tensor, completed: Tensor, rules: Rules) -> Tensor:
    """[B, C] sigma(q) = (c_visit + max N) * c_scale * q, q min-max normalised to [0, 1].

    per_node_norm (mctx): over the node's completed q, gap floored at 1e-8. Otherwise
    (EfficientZero-V2's MinMaxStats): over every return G_d = r + gamma * G_{d+1} backed up
    through any edge of the tree so far (the one-sample returns of the simulated paths, not the
    averaged Q), gap floored at 0.01, clipped to [0, 1]; before the first backup all q are 0.
    Two departures from the release: its stats also take gamma * G_0 at the root, and it skips
    the normalisation while max == min; here the gap floor always applies.
    """
    if rules.per_node_norm:
        low = completed.amin(-1, keepdim=True)  # [B, 1]
        gap = completed.amax(-1, keepdim=True) - low  # [B, 1]
        normalised = (completed - low) / gap.clamp_min(1e-8)
    else:
        low, gap = tree.q_min[:, None], (tree.q_max - tree.q_min)[:, None]  # [B, 1]
        normalised = ((completed - low) / gap.clamp_min(0.01)).clamp(0.0, 1.0)
    return (rules.c_visit + visits.amax(-1, keepdim=True)) * rules.c_scale * normalised


def node_view(tree: Tree, rows: Tensor, node: Tensor, width: int, rules: Rules) -> tuple[Tensor, Tensor, Tensor]:
    """Child visits, prior logits and sigma(completed q) of `node` [B]: three [B, C] tensors."""
    index = tree.children[rows, node, :width]  # [B, C]
    visits = tree.visits.gather(1, index) * (index > 0)  # [B, C]
    q = tree.rewards.gather(1, index) + rules.discount * tree.values.gather(1, index)  # [B, C]
    logits = tree.logits[rows, node, :width]  # [B, C]
    completed = completed_q(visits, q, logits, tree.raw_values[rows, node])
    return visits, logits, sigma_q(tree, visits, completed, rules)


def root_scores(gumbel: Tensor, logits: Tensor, sigma: Tensor, visits: Tensor, considered: Tensor | int) -> Tensor:
    """[B, K] g + logits + sigma(q) over the candidates with `considered` visits, -inf elsewhere."""
    score = (gumbel + logits - logits.amax(-1, keepdim=True) + sigma).clamp_min(-1e9)  # [B, K]
    return torch.where(visits == considered, score, -math.inf)


def interior_scores(logits: Tensor, sigma: Tensor, visits: Tensor) -> Tensor:
    """[B, C] pi'(a) - N(a) / (1 + sum N): visit counts follow pi' = softmax(logits + sigma(q))."""
    return torch.softmax(logits + sigma, -1) - visits / (1 + visits.sum(-1, keepdim=True))


def simulate(tree: Tree, gumbel: Tensor, sim: int, deepest: int, child_width: int, rules: Rules) -> Selected:
    """Descend every tree from the root to an unexpanded child slot.

    `deepest` bounds the depth of every existing node, so deepest + 1 steps reach a leaf in
    every row; rows that have already reached theirs keep their edge.
    """
    batch = gumbel.shape[0]
    rows = torch.arange(batch, device=gumbel.device)  # [B]
    leaf = sim + 1
    node = torch.zeros(batch, dtype=torch.int64, device=gumbel.device)  # [B]
    visits, logits, sigma = node_view(tree, rows, node, gumbel.shape[1], rules)
    slot = root_scores(gumbel, logits, sigma, visits, rules.considered[sim]).argmax(-1)  # [B]
    parent = node
    path = torch.full((batch, deepest + 2), leaf, dtype=torch.int64, device=gumbel.device)  # [B, P]
    path[:, 0] = 0
    length = torch.ones(batch, dtype=torch.int64, device=gumbel.device)  # [B]
    node = tree.children[rows, node, slot]  # [B]
    for depth in range(1, deepest + 1):
        active = node > 0  # [B] rows still inside the expanded part of their tree
        visits, logits, sigma = node_view(tree, rows, node, child_width, rules)
        action = interior_scores(logits, sigma, visits).argmax(-1)  # [B]
        path[:, depth] = torch.where(active, node, leaf)
        parent = torch.where(active, node, parent)
        slot = torch.where(active, action, slot)
        length = length + active
        node = torch.where(active, tree.children[rows, node, action], 0)
    return Selected(parent, slot, path, length)


def discount_matrix(size: int, discount: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """[P, P] M[j, d] = gamma ** (j - d) for j >= d, else 0: returns G = x @ M sum discounted x_j."""
    steps = torch.arange(size, device=device)
    power = steps[:, None] - steps[None, :]  # [P, P]
    return torch.where(power >= 0, torch.tensor(discount, dtype=dtype, device=device) ** power.clamp_min(0), 0)


def expand(tree: Tree, rows: Tensor, selected: Selected, leaf: int, latent: Tensor, reward: Tensor,
           value: Tensor, logits: Tensor, actions: Tensor) -> None:
    """Write node `leaf` (latent [B, H], reward [B], value [B], child logits [B, C], actions [B, C, A])."""
    width = logits.shape[1]
    tree.children[rows, selected.parent, selected.slot] = leaf
    tree.latents[:, leaf] = latent
    tree.rewards[:, leaf] = reward
    tree.raw_values[:, leaf] = value
    tree.logits[:, leaf, :width] = logits
    tree.actions[:, leaf, :width] = actions


def backup(tree: Tree, selected: Selected, value: Tensor, discounts: Tensor, track_returns: bool) -> None:
    """Back the leaf value [B] up the paths, as mctx's `backward` (running means), in one scatter.

    Along a path root = p_0 ... p_L = leaf, G_L = v(leaf) and G_d = r(p_{d+1}) + gamma * G_{d+1};
    node p_d (d < L) averages G_d into its value and gains a visit; the leaf gets value v and one
    visit. With `track_returns` the G_d of the path's edges widen the tree's [q_min, q_max].
    """
    path, length = selected.path, selected.length[:, None]  # [B, P], [B, 1]
    depth = torch.arange(path.shape[1], device=path.device)  # [P]
    inner = depth < length  # [B, P] nodes above the leaf
    step = torch.where(inner, tree.rewards.gather(1, path.roll(-1, 1)), 0)  # [B, P] r(p_{d+1})
    step = torch.where(depth == length, value[:, None], step)  # [B, P]
    returns = step @ discounts[: path.shape[1], : path.shape[1]]  # [B, P] G_d
    count = tree.visits.gather(1, path)  # [B, P]
    mean = tree.values.gather(1, path)  # [B, P]
    tree.values.scatter_(1, path, torch.where(inner, (mean * count + returns) / (count + 1), value[:, None]))
    tree.visits.scatter_(1, path, torch.where(inner, count + 1, 1))
    if track_returns:
        torch.minimum(tree.q_min, torch.where(inner, returns, math.inf).amin(-1), out=tree.q_min)
        torch.maximum(tree.q_max, torch.where(inner, returns, -math.inf).amax(-1), out=tree.q_max)
