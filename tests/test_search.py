"""The batched Gumbel search: mctx agreement, halving schedule, masking, batching, determinism."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from torch import Tensor

from ezm.config import SearchConfig
from ezm.model import Inference
from ezm.search import considered_visits, search, search_discrete, search_from_root, search_with_tree, value_of
from ezm.search import rng
from ezm.search.gumbel import _HEADS, head_draws
from ezm.search.tree import Rules, new_tree, sigma_q

GOLDEN = np.load(Path(__file__).parent / "data" / "mctx_golden.npz")
CASES = sorted({key.split("/")[0] for key in GOLDEN if key.startswith("case")})
HALVING = sorted({tuple(int(v) for v in key.split("/")[1:]) for key in GOLDEN if key.startswith("halving")})


class DiscreteOut(NamedTuple):
    latent: Tensor  # [B, H]
    reward: Tensor  # [B]
    values: Tensor  # [B, 1]
    logits: Tensor  # [B, K]


class GoldenModel:
    """scripts/make_mctx_golden.py's model, in torch, from its stored numpy weights."""

    def __init__(self, w: dict[str, Tensor]):
        self.w = w

    def _out(self, latent: Tensor, reward: Tensor) -> DiscreteOut:
        value = 3 * torch.tanh(latent @ self.w["w_v"])
        return DiscreteOut(latent, reward, value[:, None], latent @ self.w["W_p"])

    def initial(self, obs: Tensor) -> DiscreteOut:
        latent = torch.tanh(obs @ self.w["W_obs"])
        return self._out(latent, torch.zeros(latent.shape[0], dtype=latent.dtype))

    def recurrent(self, latent: Tensor, action: Tensor, task: Tensor, heads: Tensor | None = None) -> DiscreteOut:
        assert heads is None  # its single value head is every head
        nxt = torch.tanh(latent @ self.w["W_s"] + action @ self.w["W_a"])
        return self._out(nxt, 2 * torch.tanh(nxt @ self.w["w_r"]))


def asked_heads(out: Inference, heads: Tensor | None) -> Inference:
    """A test model's output restricted to the value heads [B, m] the search asks for (None: all)."""
    return out if heads is None else out._replace(values=out.values.gather(1, heads))


class MLPModel:
    """A random row-independent float64 model; its policy mean is deliberately nonzero on every dim."""

    def __init__(self, obs: int = 5, hidden: int = 7, act: int = 4, heads: int = 3, seed: int = 0):
        g = torch.Generator().manual_seed(seed)

        def w(*shape: int) -> Tensor:
            return torch.randn(*shape, generator=g, dtype=torch.float64) / shape[0] ** 0.5

        self.w_obs, self.w_s, self.w_a = w(obs, hidden), w(hidden, hidden), w(act, hidden)
        self.w_r, self.w_v, self.w_m, self.w_std = w(hidden), w(hidden, heads), w(hidden, act), w(hidden, act)
        self.seen: list[Tensor] = []  # every action the model was asked about

    def _out(self, latent: Tensor, reward: Tensor) -> Inference:
        std = torch.nn.functional.softplus(latent @ self.w_std) + 0.05
        return Inference(latent, reward, 2 * torch.tanh(latent @ self.w_v), torch.tanh(latent @ self.w_m + 0.5), std)

    def initial(self, obs: Tensor, task: Tensor) -> Inference:
        latent = torch.tanh(obs @ self.w_obs)
        return self._out(latent, torch.zeros(obs.shape[0], dtype=obs.dtype))

    def recurrent(self, latent: Tensor, action: Tensor, task: Tensor, heads: Tensor | None = None) -> Inference:
        self.seen.append(action)
        nxt = torch.tanh(latent @ self.w_s + action @ self.w_a)
        out = self._out(nxt, torch.tanh(nxt @ self.w_r))
        return asked_heads(out, heads)


class TargetModel:
    """Known Q: the first transition pays -|a - target|^2, nothing after; every value is 0.

    The latent is [depth]; the policy is N(0, 0.5) on every dim.
    """

    def __init__(self, target: Tensor):
        self.target = target  # [A]

    def _out(self, depth: Tensor, reward: Tensor) -> Inference:
        batch = depth.shape[0]
        zeros = depth.new_zeros(batch, self.target.shape[0])
        return Inference(depth, reward, depth.new_zeros(batch, 2), zeros, zeros + 0.5)

    def initial(self, obs: Tensor, task: Tensor) -> Inference:
        return self._out(obs.new_zeros(obs.shape[0], 1), obs.new_zeros(obs.shape[0]))

    def recurrent(self, latent: Tensor, action: Tensor, task: Tensor, heads: Tensor | None = None) -> Inference:
        reward = torch.where(latent[:, 0] == 0, -((action - self.target) ** 2).sum(-1), 0)
        out = self._out(latent + 1, reward)
        return asked_heads(out, heads)


def golden_case(name: str) -> dict[str, Tensor]:
    return {key.split("/")[1]: torch.from_numpy(GOLDEN[key]) for key in GOLDEN if key.startswith(name + "/")}


def roots(batch: int, obs: int = 5, seed: int = 1) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    observations = torch.randn(batch, obs, generator=g, dtype=torch.float64)
    task = torch.arange(batch) % 2
    mask = torch.ones(batch, 4)
    mask[task == 1, 2:] = 0  # task 1 has two valid dims of four
    return observations, task, mask


CFG = SearchConfig(simulations=16, root_actions=8, root_policy_samples=2, child_actions=2)


@pytest.mark.parametrize("m, n", HALVING)
def test_halving_schedule_is_mctx_visit_sequence(m: int, n: int) -> None:
    assert considered_visits(m, n) == tuple(GOLDEN[f"halving/{m}/{n}"].tolist())


def test_halving_schedule_of_the_paper_budget() -> None:
    assert considered_visits(16, 32) == (0,) * 16 + (1,) * 8 + (2,) * 4 + (3,) * 4


@pytest.mark.parametrize("case", CASES)
def test_discrete_mode_matches_mctx(case: str) -> None:
    w = golden_case(case)
    model = GoldenModel(w)
    root = model.initial(w["obs"])
    batch, k = root.logits.shape
    cfg = SearchConfig(simulations=int(w["simulations"]), root_actions=k)
    out = search_discrete(model, root, w["candidates"], torch.zeros(batch, dtype=torch.long), w["gumbel"], cfg,
                          float(w["discount"]), torch.Generator().manual_seed(0))
    chosen = (out.action[:, None] == w["candidates"]).all(-1).double().argmax(-1)  # [B]
    assert torch.equal(chosen, w["action"].long())
    assert torch.equal(out.visits, w["visits"].double())
    torch.testing.assert_close(out.improved_policy, w["action_weights"], rtol=0, atol=1e-5)
    torch.testing.assert_close(out.root_value, w["root_value"], rtol=0, atol=1e-5)


def test_discrete_mode_notices_a_changed_model() -> None:
    """The golden comparison can fail: a different discount changes mctx's answer."""
    w = golden_case(CASES[0])
    model = GoldenModel(w)
    root = model.initial(w["obs"])
    cfg = SearchConfig(simulations=int(w["simulations"]), root_actions=root.logits.shape[1])
    out = search_discrete(model, root, w["candidates"], torch.zeros(root.logits.shape[0], dtype=torch.long),
                          w["gumbel"], cfg, 0.0, torch.Generator())
    assert (out.improved_policy - w["action_weights"]).abs().max() > 1e-3


def test_known_q_picks_the_best_candidate() -> None:
    target = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
    model = TargetModel(target)
    batch = 64
    obs, task = torch.zeros(batch, 1, dtype=torch.float64), torch.zeros(batch, dtype=torch.long)
    cfg = SearchConfig(simulations=32, root_actions=16, root_policy_samples=4)
    out = search(model, obs, task, torch.ones(batch, 3), cfg, 0.99, torch.Generator().manual_seed(3), False)
    reward = -((out.candidates - target) ** 2).sum(-1)  # [B, K] the exact Q of every candidate
    best = reward.argmax(-1)  # [B]
    chosen = (out.action[:, None] == out.candidates).all(-1).double().argmax(-1)
    assert torch.equal(chosen, best)
    assert torch.equal(out.improved_policy.argmax(-1), best)
    assert (out.visits.gather(1, best[:, None]) == out.visits.amax(-1, keepdim=True)).all()
    assert torch.equal(out.visits.sum(-1), torch.full((batch,), 32.0, dtype=torch.float64))


def test_masked_dims_are_zero_at_every_depth() -> None:
    model = MLPModel()
    obs, task, mask = roots(12)
    out, tree = search_with_tree(model, model.initial(obs, task), task, mask, CFG, 0.99,
                                 torch.Generator().manual_seed(0), True)
    invalid = mask == 0  # [B, A]
    assert invalid.any() and (model.initial(obs, task).loc.abs()[invalid] > 0).all()
    assert (out.action[invalid] == 0).all() and (out.candidates.transpose(0, 1)[:, invalid] == 0).all()
    expanded = tree.actions[:, : CFG.simulations + 1]  # [B, N, W, A]: root K slots, interior C slots
    assert (expanded[:, 0].transpose(0, 1)[:, invalid] == 0).all()
    interior = expanded[:, 1:, : CFG.child_actions]  # [B, n, C, A]
    assert (interior.permute(1, 2, 0, 3)[:, :, invalid] == 0).all()
    assert (interior.permute(1, 2, 0, 3)[:, :, ~invalid] != 0).all()
    seen = torch.stack(model.seen, 1)  # [B, n, A] every action the model was given
    assert (seen.transpose(0, 1)[:, invalid] == 0).all()
    depth_two = (tree.children[:, 1:].amax(-1) > 0).any()  # some interior node was descended through
    assert depth_two
    assert out.action.abs().max() <= 0.999


def test_interior_nodes_sample_their_own_candidates() -> None:
    model = MLPModel()
    obs, task, mask = roots(6)
    _, tree = search_with_tree(model, model.initial(obs, task), task, mask, CFG, 0.99,
                               torch.Generator().manual_seed(0), False)
    interior = tree.actions[:, 1:, : CFG.child_actions]  # [B, n, C, A]
    assert (interior[:, :, 0] != interior[:, :, 1]).any(-1).all()  # two distinct samples per node
    assert (interior[:, 1:] != interior[:, :-1]).any(-1).all()  # fresh samples at every node
    assert (tree.logits[:, 1:, : CFG.child_actions] == 0).all()  # uniform prior


def one_dim_roots(root_uniform: float = 0.0) -> Tensor:
    """[4000, 6, 1] root candidates of a one-dim N(0, 0.5) policy: 2 policy samples, the rest widened x3."""
    model = TargetModel(torch.zeros(1, dtype=torch.float64))
    batch = 4000
    obs, task = torch.zeros(batch, 1, dtype=torch.float64), torch.zeros(batch, dtype=torch.long)
    cfg = SearchConfig(simulations=1, root_actions=6, root_policy_samples=2, root_widen=3.0, root_uniform=root_uniform)
    return search(model, obs, task, torch.ones(batch, 1), cfg, 0.99, torch.Generator().manual_seed(0), False).candidates


def test_root_candidates_follow_policy_then_widened_policy() -> None:
    candidates = one_dim_roots()
    assert candidates.abs().max() <= 0.999
    plain, widened = candidates[:, :2, 0].atanh(), candidates[:, 2:, 0].atanh()  # pre-tanh samples
    assert abs(plain.std().item() - 0.5) < 0.03
    assert abs(plain.mean().item()) < 0.03
    assert abs(widened.std().item() - 1.5) < 0.06  # 3 * 0.5; the clip at atanh(0.999) = 3.8 cuts 1%


def test_uniform_root_candidates_cover_the_box_and_keep_the_rest() -> None:
    plain, candidates = one_dim_roots(), one_dim_roots(root_uniform=0.5)
    assert torch.equal(candidates[:, :3], plain[:, :3])  # policy and widened samples unchanged
    box = candidates[:, 3:, 0]  # [B, 3]
    assert box.abs().max() <= 0.999
    assert abs(box.mean().item()) < 0.02 and abs(box.var().item() - 0.999**2 / 3) < 0.01  # U(-0.999, 0.999)
    assert ((box[:, 0] != box[:, 1]) & (box[:, 1] != box[:, 2])).all()  # independent draws per candidate


def test_uniform_root_candidates_are_zero_on_masked_dims() -> None:
    model = MLPModel()
    obs, task, mask = roots(12)
    cfg = SearchConfig(simulations=4, root_actions=4, root_policy_samples=1, root_uniform=1.0, child_actions=2)
    out = search(model, obs, task, mask, cfg, 0.99, torch.Generator().manual_seed(0), False)
    invalid = mask == 0  # [B, A]
    assert invalid.any()
    assert (out.candidates.transpose(0, 1)[:, invalid] == 0).all()
    assert (out.candidates[:, 1:].transpose(0, 1)[:, ~invalid] != 0).all()  # 3 uniform: at most K - 1
    assert not torch.equal(out.candidates[:, 0], out.candidates[:, 1])


def test_batch_gives_the_results_of_single_root_searches() -> None:
    model = MLPModel()
    obs, task, mask = roots(5)
    keys = torch.tensor([3, 1, 4, 1, 5], dtype=torch.int64) * 1_000_003
    together = search(model, obs, task, mask, CFG, 0.97, None, True, keys=keys)
    for b in range(5):
        alone = search(model, obs[b:b + 1], task[b:b + 1], mask[b:b + 1], CFG, 0.97, None, True, keys=keys[b:b + 1])
        for whole, single in zip(together, alone):
            torch.testing.assert_close(whole[b:b + 1], single, rtol=0, atol=1e-12)
    assert not torch.equal(together.candidates[1], together.candidates[3])  # equal keys, different roots


def test_same_seed_same_output_and_seed_matters() -> None:
    model = MLPModel()
    obs, task, mask = roots(4)
    first = search(model, obs, task, mask, CFG, 0.99, torch.Generator().manual_seed(7), True)
    again = search(model, obs, task, mask, CFG, 0.99, torch.Generator().manual_seed(7), True)
    other = search(model, obs, task, mask, CFG, 0.99, torch.Generator().manual_seed(8), True)
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    assert not torch.equal(first.candidates, other.candidates)


def test_outputs_are_consistent() -> None:
    model = MLPModel()
    obs, task, mask = roots(6)
    root = model.initial(obs, task)
    out = search_from_root(model, root, task, mask, CFG, 0.99, torch.Generator().manual_seed(0), True)
    k = CFG.root_actions
    assert out.candidates.shape == (6, k, 4) and out.improved_policy.shape == (6, k) and out.visits.shape == (6, k)
    torch.testing.assert_close(out.improved_policy.sum(-1), torch.ones(6, dtype=torch.float64))
    assert torch.equal(out.visits.sum(-1), torch.full((6,), float(CFG.simulations), dtype=torch.float64))
    chosen = (out.action[:, None] == out.candidates).all(-1)  # [B, K]
    assert (chosen.sum(-1) >= 1).all()
    assert (out.visits[chosen] == out.visits.amax(-1).repeat_interleave(chosen.sum(-1))).all()
    # the root value is a mean of 2-head-minimum values and returns: within the model's value range
    assert (out.root_value.abs() < 2 / (1 - 0.99)).all()


def test_value_is_minimum_of_random_heads() -> None:
    values = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]]).repeat(2000, 1)  # [B, V]
    draws = rng.uniform(torch.arange(2000), 0, (5,), torch.float64)
    picked = value_of(values, draws, 2)
    counts = torch.bincount(picked.long(), minlength=6)[1:]
    # min of a random pair of 5: P(min = i) = (5 - i) / 10
    expected = torch.tensor([0.4, 0.3, 0.2, 0.1, 0.0]) * 2000
    assert (counts - expected).abs().max() < 80
    assert torch.equal(value_of(values[:3, :2], draws[:3, :2], 2), torch.ones(3))
    assert torch.equal(value_of(values[:3, :1], draws[:3, :1], 2), torch.ones(3))


def test_head_draws_are_fresh_at_every_node() -> None:
    keys = torch.arange(6)
    per_node = head_draws(keys, SearchConfig(simulations=7), 5, torch.float64)  # [6, 8, 5]
    assert per_node.shape == (6, 8, 5)
    assert torch.equal(per_node, rng.uniform(keys, _HEADS, (8, 5), torch.float64))  # the release's stream
    assert not torch.equal(per_node[:, 0], per_node[:, 1])
    assert not torch.equal(per_node[0], per_node[1])  # and fresh for every root


def test_tree_normalisation_floors_the_gap_and_clips() -> None:
    tree = new_tree(torch.zeros(2, 3), torch.zeros(2), torch.zeros(2, 4), torch.zeros(2, 4, 1), 4)
    rules = Rules(0.99, 50.0, 0.1, False, considered_visits(4, 4))
    visits = torch.tensor([[2.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    completed = torch.tensor([[0.5, 0.505, 2.0, -1.0], [3.0, 3.0, 3.0, 3.0]])
    assert (sigma_q(tree, visits, completed, rules) == 0).all()  # nothing backed up yet
    tree.q_min.copy_(torch.tensor([0.5, 0.0]))
    tree.q_max.copy_(torch.tensor([0.504, 10.0]))
    sigma = sigma_q(tree, visits, completed, rules)
    torch.testing.assert_close(sigma[0], (50 + 2) * 0.1 * torch.tensor([0.0, 0.5, 1.0, 0.0]))
    torch.testing.assert_close(sigma[1], (50 + 0) * 0.1 * torch.full((4,), 0.3))


def test_noise_draws_are_standard() -> None:
    keys = torch.arange(500)
    z = rng.normal(keys, 0, (40,), torch.float64)
    g = rng.gumbel(keys, 1, (40,), torch.float64)
    assert abs(z.mean().item()) < 0.02 and abs(z.std().item() - 1) < 0.02
    assert abs(g.mean().item() - 0.5772) < 0.03 and abs(g.var().item() - 1.6449) < 0.1
    assert not torch.equal(rng.uniform(keys, 0, (3,), torch.float64), rng.uniform(keys, 1, (3,), torch.float64))


def test_real_world_model_float32() -> None:
    from ezm.config import dmc
    from ezm.model import WorldModel

    cfg = dmc()
    task_mask = torch.ones(3, 6)
    task_mask[1, 4:] = 0
    model = WorldModel(cfg.model, 3, 24, 6, task_mask).eval()
    task = torch.arange(8) % 3
    out = search(model, torch.randn(8, 24), task, task_mask[task], cfg.search, 0.99,
                 torch.Generator().manual_seed(0), True)
    assert out.action.dtype == torch.float32 and out.action.shape == (8, 6)
    assert (out.action[task == 1, 4:] == 0).all() and torch.isfinite(out.root_value).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu() -> None:
    model = MLPModel()
    obs, task, mask = roots(5)
    keys = torch.arange(5) * 7919
    cpu = search(model, obs, task, mask, CFG, 0.99, None, True, keys=keys)
    device = torch.device("cuda")
    gpu_model = MLPModel()
    for name, value in vars(model).items():
        if isinstance(value, Tensor):
            setattr(gpu_model, name, value.to(device))
    gpu = search(gpu_model, obs.to(device), task.to(device), mask.to(device), CFG, 0.99, None, True,
                 keys=keys.to(device))
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(a, b.cpu(), rtol=0, atol=1e-9)
