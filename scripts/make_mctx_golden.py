"""Write tests/data/mctx_golden.npz: mctx's Gumbel MuZero search on small random models.

The discrete mode of `ezm.search` (`search_discrete`) claims to be mctx's
`gumbel_muzero_policy` with its default q transform (`qtransform_completed_by_mix_value`,
maxvisit_init 50, value_scale 0.1) over a fixed candidate set. This script runs mctx itself
(JAX on CPU, float64) on random MLP models whose numpy weights it stores, together with the
Gumbel noise mctx drew, the chosen actions, the action weights (improved policy), the root
visit counts and the root values, and mctx's sequential-halving visit sequences for several
(m, n). tests/test_search.py rebuilds each model in torch and checks ezm against the file,
without JAX.

JAX and mctx are NOT dependencies of ezm. To regenerate, use a separate environment:

    python3 -m venv /tmp/mctxenv && /tmp/mctxenv/bin/pip install jax jaxlib mctx
    /tmp/mctxenv/bin/python scripts/make_mctx_golden.py   # run from the repository root

The model (root b with candidate actions c_b [K, A]; latent s [H]):
    initial:   s = tanh(obs @ W_obs)
    recurrent: s' = tanh(s @ W_s + c_b[a] @ W_a), reward = 2 tanh(s' @ w_r)
    both:      value = 3 tanh(s @ w_v), prior logits = s @ W_p [K]; discount gamma per edge.
"""
from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import mctx
import numpy as np
from mctx._src import seq_halving

jax.config.update("jax_enable_x64", True)

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "mctx_golden.npz"
# (candidates K, simulations n, batch B, gumbel scale, discount)
CASES = [(16, 32, 6, 1.0, 0.97), (4, 9, 6, 1.0, 0.97), (8, 20, 5, 1.0, 0.9), (2, 5, 4, 1.0, 0.99),
         (3, 11, 5, 1.0, 0.8), (16, 64, 3, 1.0, 0.97), (6, 16, 4, 0.0, 0.95), (16, 32, 4, 0.3, 1.0)]
HALVING = [(16, 32), (4, 9), (8, 20), (2, 5), (3, 11), (16, 64), (6, 16), (16, 8), (1, 7), (5, 50),
           (32, 200), (16, 400)]
OBS, HIDDEN, ACT = 5, 8, 3


def weights(rng: np.random.Generator, k: int, batch: int) -> dict[str, np.ndarray]:
    return {
        "obs": rng.normal(size=(batch, OBS)),
        "candidates": rng.uniform(-1, 1, size=(batch, k, ACT)),
        "W_obs": rng.normal(size=(OBS, HIDDEN)),
        "W_s": rng.normal(size=(HIDDEN, HIDDEN)) / np.sqrt(HIDDEN),
        "W_a": rng.normal(size=(ACT, HIDDEN)),
        "w_r": rng.normal(size=(HIDDEN,)) / np.sqrt(HIDDEN),
        "w_v": rng.normal(size=(HIDDEN,)) / np.sqrt(HIDDEN),
        "W_p": rng.normal(size=(HIDDEN, k)),
    }


def run_case(w: dict[str, np.ndarray], simulations: int, gumbel_scale: float, discount: float,
             seed: int) -> dict[str, np.ndarray]:
    p = {name: jnp.asarray(value) for name, value in w.items()}
    batch = p["obs"].shape[0]
    latent = jnp.tanh(p["obs"] @ p["W_obs"])
    root = mctx.RootFnOutput(prior_logits=latent @ p["W_p"], value=3 * jnp.tanh(latent @ p["w_v"]),
                             embedding=latent)

    def recurrent_fn(params, rng_key, action, embedding):
        del rng_key
        chosen = params["candidates"][jnp.arange(batch), action]  # [B, A]
        nxt = jnp.tanh(embedding @ params["W_s"] + chosen @ params["W_a"])
        out = mctx.RecurrentFnOutput(reward=2 * jnp.tanh(nxt @ params["w_r"]),
                                     discount=jnp.full((batch,), discount),
                                     prior_logits=nxt @ params["W_p"],
                                     value=3 * jnp.tanh(nxt @ params["w_v"]))
        return out, nxt

    key = jax.random.PRNGKey(seed)
    k = p["W_p"].shape[1]
    policy = mctx.gumbel_muzero_policy(params=p, rng_key=key, root=root, recurrent_fn=recurrent_fn,
                                       num_simulations=simulations, max_num_considered_actions=k,
                                       gumbel_scale=gumbel_scale)
    # gumbel_muzero_policy draws its root noise with the second key of split(key)
    _, gumbel_key = jax.random.split(key)
    gumbel = gumbel_scale * jax.random.gumbel(gumbel_key, shape=root.prior_logits.shape,
                                              dtype=root.prior_logits.dtype)
    tree = policy.search_tree
    return {
        "gumbel": np.asarray(gumbel),
        "action": np.asarray(policy.action),
        "action_weights": np.asarray(policy.action_weights),
        "visits": np.asarray(tree.children_visits[:, 0]),
        "root_value": np.asarray(tree.node_values[:, 0]),
        "discount": np.asarray(discount),
        "simulations": np.asarray(simulations),
    }


def main() -> None:
    rng = np.random.default_rng(20260311)
    arrays: dict[str, np.ndarray] = {}
    for index, (k, simulations, batch, gumbel_scale, discount) in enumerate(CASES):
        w = weights(rng, k, batch)
        result = run_case(w, simulations, gumbel_scale, discount, seed=index)
        for name, value in {**w, **result}.items():
            arrays[f"case{index}/{name}"] = value
        print(f"case {index}: K={k} n={simulations} B={batch} actions {result['action'].tolist()}")
    for m, n in HALVING:
        arrays[f"halving/{m}/{n}"] = np.asarray(seq_halving.get_sequence_of_considered_visits(m, n))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
