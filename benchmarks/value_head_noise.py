"""How often the value-head draw, not the model's mean estimate, decides the search's best candidate.

    python benchmarks/value_head_noise.py RUN_DIR_OR_CHECKPOINT --tag ar4

The search scores a root candidate a as q(a) = r + discount * v, where v is the minimum over
`search.value_min_heads` value heads drawn at random for every node (the release's rule). This
script plays evaluation episodes (no noise) with a trained model; at every decision of every
row it scores all K root candidates with one model call and compares the best candidate under
the ensemble mean with the best under (a) `draws` random draws of the configured number of heads
(one per candidate, as the search draws them, or with `--shared-draw` one per root shared by all
candidates) and
(b) the minimum over all heads. A high "flip rate" for (a) means the choice among candidates is
mostly decided by which heads were drawn.

Writes benchmarks/results/value_head_noise[_TAG].json: per task the flip rates, the mean spread
of q over the candidates and the mean standard deviation of q across heads.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch
from _meta import REPO, meta

from ezm import config as config_lib
from ezm.model import Inference
from ezm.search import search_from_root, value_of
from ezm.workers.evaluate import Evaluator
from ezm.workers.run import load_for_eval


@torch.no_grad()
def candidate_statistics(model, root: Inference, task: torch.Tensor, candidates: torch.Tensor,
                         cfg: config_lib.Config, draws: int, shared: bool,
                         generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Per row [E]: flip rates of the random-head and all-head minimum against the mean, q spread, head std."""
    rows, k, dims = candidates.shape
    latent = root.latent.repeat_interleave(k, 0)  # [E * K, H]
    out = model.recurrent(latent, candidates.reshape(rows * k, dims), task.repeat_interleave(k))
    q = (out.reward[:, None] + cfg.decision_discount * out.values).view(rows, k, -1)  # [E, K, V]
    best_mean = q.mean(-1).argmax(-1)  # [E]
    per_candidate = 1 if shared else k
    uniforms = torch.rand(draws, rows, per_candidate, q.shape[-1], generator=generator)  # [D, E, K or 1, V]
    uniforms = uniforms.expand(-1, -1, k, -1).reshape(draws * rows * k, -1)  # [D * E * K, V]
    repeated = q.reshape(1, rows * k, -1).expand(draws, -1, -1).reshape(draws * rows * k, -1)  # [D * E * K, V]
    drawn = value_of(repeated, uniforms, cfg.search.value_min_heads)  # [D * E * K]
    best_drawn = drawn.view(draws, rows, k).argmax(-1)  # [D, E]
    return {
        "flip_random_heads": (best_drawn != best_mean).float().mean(0),  # [E]
        "flip_all_heads_min": (q.amin(-1).argmax(-1) != best_mean).float(),  # [E]
        "q_spread": q.mean(-1).amax(-1) - q.mean(-1).amin(-1),  # [E]
        "head_std": q.std(-1).mean(-1),  # [E]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", help="run directory or checkpoint file")
    parser.add_argument("--episodes", type=int, default=2, help="evaluation episodes per task")
    parser.add_argument("--draws", type=int, default=20, help="random head draws per decision")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shared-draw", action="store_true",
                        help="one head draw per root shared by all candidates, instead of one per candidate")
    parser.add_argument("--tag", default="", help="suffix of the output file")
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    torch.set_num_threads(1)
    torch.set_grad_enabled(False)  # inference only

    cfg, model, tasks, env_steps = load_for_eval(Path(args.path))
    evaluator = Evaluator(tasks, cfg, args.episodes, seed=args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    sums, decisions = {}, np.zeros(evaluator.env.num_envs, np.int64)  # per row [E]

    def act(obs: torch.Tensor, counted: np.ndarray) -> torch.Tensor:
        root = model.initial(obs, evaluator.task)
        out = search_from_root(model, root, evaluator.task, evaluator.action_mask, cfg.search, cfg.decision_discount,
                               generator, add_noise=False)
        stats = candidate_statistics(model, root, evaluator.task, out.candidates, cfg, args.draws, args.shared_draw,
                                     generator)
        for name, value in stats.items():
            sums[name] = sums.get(name, 0) + value.numpy() * counted
        decisions[:] += counted
        return out.action

    evaluator.run(model, generator, env_steps, act=act)
    evaluator.close()

    per_row = {name: total / decisions for name, total in sums.items()}  # [E] per-decision means
    by_task = {t.name: {name: float(v.reshape(len(tasks), args.episodes)[i].mean()) for name, v in per_row.items()}
               for i, t in enumerate(tasks)}
    out = {**meta(), "config": config_lib.to_dict(cfg), "checkpoint": str(args.path), "env_steps_per_task": env_steps,
           "episodes": args.episodes, "draws": args.draws, "shared_draw": args.shared_draw, "seed": args.seed, "tasks": by_task}
    results = REPO / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"value_head_noise{'_' + args.tag if args.tag else ''}.json"
    path.write_text(json.dumps(out, indent=1))
    for name, row in by_task.items():
        print(f"{name:<26}" + "  ".join(f"{k} {v:.3f}" for k, v in row.items()))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
