import dataclasses
import math

import pytest
import torch
from torch.nn import functional as F

from ezm.config import paper, quickstart
from ezm.model import Support, WorldModel, count_parameters
from ezm.model.networks import ValueEnsemble, head
from ezm.model.policy import LOC_BOUND, LOG_STD_MAX, LOG_STD_MIN, entropy, gaussian, log_prob, raw_log_std
from ezm.model.support import h, h_inverse
from squashed import squashed

OBS, ACT, TASKS = 10, 4, 3
# tasks 0 and 1 use every action dim; task 2 only the first two
MASK = torch.tensor([[1.0, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0]])


def small_model(**changes) -> WorldModel:
    torch.manual_seed(0)
    cfg = dataclasses.replace(quickstart().model, blocks=1, value_heads=3, **changes)
    return WorldModel(cfg, TASKS, OBS, ACT, MASK)


def inputs(batch: int = 6, tasks=(0, 1, 2)):
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(batch, OBS, generator=g)  # [B, O]
    task = torch.tensor(tasks).repeat(batch // len(tasks) + 1)[:batch]  # [B]
    action = (torch.rand(batch, ACT, generator=g) * 2 - 1) * MASK[task]  # [B, A]
    return obs, task, action


def test_h_inverse_round_trip():
    x = torch.cat([torch.linspace(-1000, 1000, 2001, dtype=torch.float64),
                   torch.tensor([0.0, 1e-6, -1e-6, 1e5, -1e5], dtype=torch.float64)])
    torch.testing.assert_close(h_inverse(h(x)), x, rtol=1e-9, atol=1e-9)
    assert h(torch.tensor(-3.0)) < 0  # odd, never clipped at 0


@pytest.mark.parametrize("low, high", [(-2.0, 2.0), (-299.0, 299.0), (-20.0, 5.0)])
def test_two_hot_then_decode_returns_the_values(low, high):
    support = Support(low, high, 51)
    x = torch.cat([torch.linspace(low, high, 37), torch.tensor([low, high, 0.0, -0.3, 1.7])])
    target = support.two_hot(x.reshape(6, 7))  # [6, 7, 51]
    assert target.shape == (6, 7, 51)
    assert (target >= 0).all() and torch.allclose(target.sum(-1), torch.ones(6, 7))
    assert ((target > 0).sum(-1) <= 2).all()
    decoded = support.decode(target.log())  # softmax(log p) = p
    torch.testing.assert_close(decoded, x.reshape(6, 7), rtol=1e-4, atol=1e-4)


def test_values_outside_the_range_go_to_the_ends():
    support = Support(-2.0, 2.0, 51)
    target = support.two_hot(torch.tensor([-50.0, 50.0]))
    assert target[0, 0] == 1 and target[1, -1] == 1
    torch.testing.assert_close(support.decode(target.log()), torch.tensor([-2.0, 2.0]))


def test_paper_preset_sizes_and_parameter_count():
    model = WorldModel(paper().model, 14, 177, 61, torch.ones(14, 61))
    assert model.representation.input.in_features == 305  # 177 + 128
    assert model.dynamics.input.in_size == 701  # 512 + 128 + 61
    assert model.action_encoder.input.in_features == 189  # 61 + 128
    assert model.value_policy.norm.normalized_shape == (640,)  # 512 + 128
    assert model.value_policy.value_heads.input.in_features == 640
    assert model.value_policy.policy_head[-1].out_features == 122  # 2 x 61
    assert model.value_policy.value_heads.heads == 5
    assert 15e6 < count_parameters(model) < 17e6


def test_masked_action_dims():
    model = small_model().eval()
    obs, task, action = inputs()
    for out in (model.initial(obs, task), model.recurrent(model.initial(obs, task).latent, action, task)):
        masked = MASK[task] == 0  # [B, A]
        assert masked.any()
        assert (out.loc[masked] == 0).all()
        assert torch.allclose(out.std[masked], torch.tensor(math.exp(LOG_STD_MIN)))
        assert (out.loc.abs() < LOC_BOUND).all() and (out.loc[~masked] != 0).all()
        assert (out.std[~masked] >= math.exp(LOG_STD_MIN)).all() and (out.std <= math.exp(2.0)).all()


def test_actions_on_masked_dims_are_ignored():
    model = small_model().eval()
    obs, task, action = inputs()
    latent = model.initial(obs, task).latent
    noisy = action + (1 - MASK[task]) * 0.7  # garbage on masked dims only
    torch.testing.assert_close(model.recurrent_logits(latent, noisy, task),
                               model.recurrent_logits(latent, action, task))


def _path_outputs(model, obs, task, action):
    """One output per embedding injection point, each fed the same latent."""
    latent = model.initial(obs, torch.zeros_like(task)).latent  # [B, H], the same for every task
    value_logits, mean, _ = model._value_policy(latent, model.task_embedding(task), task)
    return {
        "te_representation": model.initial_logits(obs, task).latent,
        "te_dynamics": model.recurrent_logits(latent, action, task).latent,
        "te_reward": model.reward_logits(latent, action, task),
        "te_value_policy": torch.cat([value_logits.flatten(1), mean], dim=1),
    }


@pytest.mark.parametrize("switch", ["te_representation", "te_dynamics", "te_reward", "te_value_policy"])
def test_task_embedding_switches(switch):
    on, off = small_model().eval(), small_model(**{switch: False}).eval()
    E = on.cfg.task_embedding_dim
    sizes = {
        "te_representation": lambda m: m.representation.input.in_features,
        "te_dynamics": lambda m: m.dynamics.input.in_size,
        "te_reward": lambda m: m.reward.input.in_size + m.action_encoder.input.in_features,
        "te_value_policy": lambda m: m.value_policy.norm.normalized_shape[0],
    }[switch]
    shrink = 2 * E if switch == "te_reward" else E  # the reward path feeds e twice (U and R)
    assert sizes(on) - sizes(off) == shrink
    obs, _, action = inputs(4, tasks=(0,))  # same rows, tasks 0 and 1 share a mask
    with torch.no_grad():
        for model in (on, off):
            torch.nn.init.normal_(model.reward.head[-1].weight)  # it starts at zero
        for model, depends in ((on, True), (off, False)):
            task0 = _path_outputs(model, obs, torch.zeros(4, dtype=torch.long), action)[switch]
            task1 = _path_outputs(model, obs, torch.ones(4, dtype=torch.long), action)[switch]
            assert torch.allclose(task0, task1) != depends


def test_mixed_task_batch_equals_rows_alone():
    model = small_model().eval()
    obs, task, action = inputs(6)
    with torch.no_grad():  # logits, not decoded values: the wide value support amplifies float rounding
        first = model.initial_logits(obs, task)
        step = model.recurrent_logits(first.latent, action, task)
        for i in range(6):
            row = slice(i, i + 1)
            alone = model.initial_logits(obs[row], task[row])
            torch.testing.assert_close(alone, tuple(t[row] for t in first), rtol=1e-5, atol=1e-5)
            alone = model.recurrent_logits(first.latent[row], action[row], task[row])
            torch.testing.assert_close(alone, tuple(t[row] for t in step), rtol=1e-5, atol=1e-5)


def test_initial_and_logits_agree():
    model = small_model().eval()
    obs, task, action = inputs()
    with torch.no_grad():
        logits = model.initial_logits(obs, task)
        decoded = model.initial(obs, task)
        step = model.recurrent_logits(logits.latent, action, task)
        step_decoded = model.recurrent(logits.latent, action, task)
    assert (decoded.reward == 0).all() and (logits.reward_logits == 0).all()
    torch.testing.assert_close(decoded.values, model.value_support.decode(logits.value_logits))
    torch.testing.assert_close(model.value_logits(logits.latent, task), logits.value_logits)
    torch.testing.assert_close(step_decoded.reward, model.reward_support.decode(step.reward_logits))
    torch.testing.assert_close(model.reward_logits(logits.latent, action, task), step.reward_logits)
    assert decoded.values.shape == (6, 3) and step_decoded.latent.shape == (6, model.cfg.hidden)
    assert model.project(logits.latent).shape == (6, model.cfg.projector_out)
    assert model.predict(model.project(logits.latent)).shape == (6, model.cfg.projector_out)


def test_asked_for_value_heads_are_those_of_the_full_ensemble():
    model = small_model().eval()  # 3 heads
    obs, task, action = inputs(6)
    heads = torch.tensor([[2, 0], [0, 2], [2, 0], [1, 1], [0, 2], [2, 0]])  # head 1 read by one row only
    with torch.no_grad():
        latent = model.initial(obs, task).latent
        every = model.recurrent_logits(latent, action, task)
        asked = model.recurrent_logits(latent, action, task, heads)
        decoded = model.recurrent(latent, action, task, heads)
        unread = model.recurrent(latent, action, task, torch.zeros(6, 1, dtype=torch.long))  # heads 1, 2 idle
    assert asked.value_logits.shape == (6, 2, model.cfg.support_bins) and decoded.values.shape == (6, 2)
    expected = every.value_logits.gather(1, heads[..., None].expand(-1, -1, model.cfg.support_bins))
    torch.testing.assert_close(asked.value_logits, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(decoded.values, model.value_support.decode(expected), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(unread.values[:, 0], model.value_support.decode(every.value_logits[:, 0]),
                               rtol=1e-4, atol=1e-4)
    for field in ("latent", "reward_logits", "loc", "std"):
        assert torch.equal(getattr(asked, field), getattr(every, field))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # the heads' dtype, whatever it is
        assert model.recurrent_logits(latent, action, task, heads).value_logits.dtype == torch.bfloat16


def _separate_heads(ensemble: ValueEnsemble) -> list[torch.nn.Sequential]:
    """The ensemble's V heads as V plain `head` modules with the same weights and statistics."""
    size, hidden = ensemble.input.in_features, ensemble.hidden
    heads = []
    for h in range(ensemble.heads):
        one = head(size, hidden, ensemble.weight3.shape[-1])
        rows = slice(h * hidden, (h + 1) * hidden)
        with torch.no_grad():
            one[0].weight.copy_(ensemble.input.weight[rows]), one[0].bias.copy_(ensemble.input.bias[rows])
            one[3].weight.copy_(ensemble.weight2[h].T), one[3].bias.copy_(ensemble.bias2[h, 0])
            one[6].weight.copy_(ensemble.weight3[h].T), one[6].bias.copy_(ensemble.bias3[h, 0])
            for norm, grouped in ((one[1], ensemble.norm1), (one[4], ensemble.norm2)):
                for name in ("weight", "bias", "running_mean", "running_var"):
                    getattr(norm, name).copy_(getattr(grouped, name)[rows])
        heads.append(one)
    return heads


def test_value_ensemble_is_its_heads_side_by_side():
    torch.manual_seed(0)
    ensemble = ValueEnsemble(6, 8, 5, heads=3)
    with torch.no_grad():  # statistics and affine parameters that differ per channel
        for norm in (ensemble.norm1, ensemble.norm2):
            norm.running_mean.uniform_(-1, 1), norm.running_var.uniform_(0.5, 2), norm.weight.uniform_(0.5, 2)
    separate = _separate_heads(ensemble)
    x = torch.randn(10, 6, requires_grad=True)
    grouped = ensemble(x)  # train mode: batch statistics, running statistics updated
    alone = torch.stack([one(x) for one in separate], 1)  # [B, V, bins]
    torch.testing.assert_close(grouped, alone)
    weights = torch.randn_like(grouped)
    grad_x, grad_w2 = torch.autograd.grad((grouped * weights).sum(), (x, ensemble.weight2))
    grads_alone = torch.autograd.grad((alone * weights).sum(), (x, *(one[3].weight for one in separate)))
    torch.testing.assert_close(grad_x, grads_alone[0])
    torch.testing.assert_close(grad_w2, torch.stack([g.T for g in grads_alone[1:]]))
    for h, one in enumerate(separate):
        rows = slice(h * 8, (h + 1) * 8)
        torch.testing.assert_close(ensemble.norm2.running_mean[rows], one[4].running_mean)
        torch.testing.assert_close(ensemble.norm1.running_var[rows], one[1].running_var)
    ensemble.eval()
    for one in separate:
        one.eval()
    with torch.no_grad():
        every = ensemble(x)
        for h, one in enumerate(separate):
            torch.testing.assert_close(every[:, h], one(x))
            torch.testing.assert_close(ensemble.head(h, x[3:7]), one(x[3:7]))
    with pytest.raises(RuntimeError, match="eval mode"):
        ensemble.train().head(0, x)


def test_gradients_flow_through_the_unroll():
    model = small_model().train()
    with torch.no_grad():
        torch.nn.init.normal_(model.reward.head[-1].weight)  # it starts at zero, blocking the path
    obs, task, action = inputs(8)
    latent = model.initial_logits(obs, task).latent
    for _ in range(3):
        out = model.recurrent_logits(latent, action, task)
        latent = out.latent
    # only the last step is scored: the representation learns through three dynamics steps
    loss = (out.reward_logits.logsumexp(-1).sum() + out.value_logits.logsumexp(-1).sum()
            + out.loc.sum() + out.std.sum() + model.predict(model.project(latent)).square().sum())
    loss.backward()
    for name in ("task_embedding", "representation", "action_encoder", "dynamics", "reward",
                 "value_policy", "projector", "predictor"):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name
    first_layer = model.representation.input.weight.grad
    assert torch.isfinite(first_layer).all() and first_layer.abs().sum() > 0


def test_policy_std_floor_holds_for_any_head_output_and_spares_masked_dims():
    raw = torch.cat([torch.zeros(3, 4), torch.tensor([-1e4, -3.0, 0.0, 1e4]).expand(3, 4)], dim=1)  # [3, 2A]
    _, std = gaussian(raw, MASK, log_std_min=math.log(0.1))
    valid = MASK.bool()
    assert std[valid].min() == pytest.approx(0.1) and std[valid].max() == pytest.approx(math.exp(LOG_STD_MAX))
    assert torch.allclose(std[~valid], torch.tensor(math.exp(LOG_STD_MIN)))  # masked dims stay at the narrowest
    _, release_std = gaussian(raw, MASK)
    assert release_std[valid].min() == pytest.approx(math.exp(LOG_STD_MIN))
    for floor in (LOG_STD_MIN, math.log(0.1)):  # the head's initial bias gives policy_init_std under either range
        start = torch.full((1, 8), raw_log_std(0.5, floor))
        torch.testing.assert_close(gaussian(start, torch.ones(1, 4), floor)[1], torch.full((1, 4), 0.5))
    floored = small_model(policy_log_std_min=math.log(0.1)).eval()
    with torch.no_grad():
        floored.value_policy.policy_head[-1].bias[ACT:] = -1e4  # a head that asks for std 0
    obs, task, _ = inputs()
    with torch.no_grad():
        assert float(floored.initial(obs, task).std[MASK[task].bool()].min()) == pytest.approx(0.1)


def test_policy_log_prob_is_the_squashed_density_summed_over_valid_dims():
    loc = torch.tensor([[0.1, -0.5, 0.0], [2.0, 0.2, 0.0]])
    std = torch.tensor([[0.5, 1.0, 1e-4], [0.2, 0.3, 1e-4]])
    action = torch.tensor([[0.2, -0.1, 0.9], [0.97, 0.5, 0.9]])  # the last dim is masked
    mask = torch.tensor([[1.0, 1, 0], [1, 1, 0]])
    expected = squashed(loc[:, :2], std[:, :2]).log_prob(action[:, :2]).sum(-1)
    torch.testing.assert_close(log_prob(loc, std, action, mask), expected)
    edge = torch.tensor([[1.0, -1.0, 0.0]])  # beyond the search's bound: scored at +-0.999, finite
    at_bound = log_prob(loc[:1], std[:1], edge * 0.999, mask[:1])
    torch.testing.assert_close(log_prob(loc[:1], std[:1], edge, mask[:1]), at_bound)
    assert torch.isfinite(at_bound).all()


def test_policy_entropy_is_the_squashed_entropy_and_peaks_at_a_moderate_std():
    torch.manual_seed(0)
    loc = torch.tensor([[0.0, 1.5, 0.0], [-0.7, 3.0, 0.0]])
    std = torch.tensor([[0.8, 0.4, 1e-4], [2.0, 1.0, 1e-4]])
    mask = torch.tensor([[1.0, 1, 0], [1, 1, 0]])
    dist = squashed(loc[:, :2], std[:, :2])
    samples = dist.sample((200_000,))  # [N, 2, 2]
    monte_carlo = -dist.log_prob(samples).mean(0).sum(-1)  # [2]
    torch.testing.assert_close(entropy(loc, std, mask), monte_carlo, atol=0.02, rtol=0)
    one = torch.ones(1, 1)
    at = {s: float(entropy(torch.zeros(1, 1), torch.full((1, 1), s), one)) for s in (0.3, 0.9, 3.0)}
    assert at[0.9] > at[0.3] and at[0.9] > at[3.0]  # a Gaussian's entropy would only grow with std
    assert at[0.9] < math.log(2.0)  # below the uniform distribution's on (-1, 1)


def test_tiny_fit_drives_reward_cross_entropy_down():
    model = small_model().train()
    obs, task, action = inputs(32)
    g = torch.Generator().manual_seed(2)
    reward = torch.rand(32, generator=g) * 3 - 1.5  # [B] in the support's range, both signs
    target = model.reward_support.two_hot(reward)  # [B, bins]
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)

    def cross_entropy():
        latent = model.initial_logits(obs, task).latent
        logits = model.reward_logits(latent, action, task)
        return -(target * F.log_softmax(logits, -1)).sum(-1).mean()

    first = cross_entropy().item()
    for _ in range(200):
        optimiser.zero_grad()
        loss = cross_entropy()
        loss.backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        last = cross_entropy().item()
        latent = model.initial(obs, task).latent
        predicted = model.recurrent(latent, action, task).reward
    assert last < 0.5 * first
    assert (predicted - reward).abs().mean() < 0.2
