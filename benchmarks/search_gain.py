"""What the search adds to a trained model: its returns acted by the search at several budgets,
by the run's search with every root candidate from the policy (no uniform candidates), by the
mean of the run's search's improved policy over its root candidates (instead of its best
candidate), by the policy mean alone, and by uniform random actions, on the same episode starts.

    python benchmarks/search_gain.py RUN_DIR --episodes 4 --tag walker_s0

If the policy mean is no better than random the policy has not learned; if a larger search
beats the run's own, the run's search budget limits what the policy can be taught; if the search
mean beats the search, the best candidate is chosen among near-equal values and pays for acting
near the bounds (dm_control's control costs); if the policy-only search loses to the run's, the
policy does not propose the actions the model values most. Budgets are `simulations/root_actions`
pairs, whose root candidates are drawn as in evaluation (search.eval_root_widen, eval_root_uniform).

Writes benchmarks/results/search_gain[_TAG].json.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import _trained
import torch
from _meta import meta

from ezm.search import search
from ezm.workers.evaluate import Evaluator
from ezm.workers.run import load_for_eval


def main() -> None:
    parser = _trained.parser(__doc__, episodes=4)
    parser.add_argument("--budgets", default="run,16/16,32/16",
                        help="comma-separated simulations/root_actions pairs; 'run' is the run's own search")
    args = _trained.parse_args(parser)
    cfg, model, tasks, env_steps = load_for_eval(Path(args.path))
    generator = torch.Generator(device=cfg.device).manual_seed(args.seed)
    rows = {}

    def play(label, act=None, search_cfg=None, make_act=None):
        evaluator = Evaluator(tasks, cfg, args.episodes, seed=args.seed + 10_000)  # the same starts for every actor
        if search_cfg is not None:
            evaluator.search_cfg = search_cfg
        if make_act is not None:
            act = make_act(evaluator)
        result = evaluator.run(model, generator, env_steps, act=act)
        evaluator.close()
        rows[label] = {t.name: result.mean_return(i) for i, t in enumerate(tasks)}
        print(f"{label:<14}" + "".join(f"{v:>{width}.1f}" for v in rows[label].values()))

    width = max(len(t.name) for t in tasks) + 2
    print(f"{'actor':<14}" + "".join(f"{t.name:>{width}}" for t in tasks))
    for budget in args.budgets.split(","):
        if budget == "run":
            play("search run")
            continue
        simulations, actions = (int(x) for x in budget.split("/"))
        search_cfg = dataclasses.replace(cfg.search.for_evaluation(), simulations=simulations,
                                         root_actions=actions, root_policy_samples=actions)
        play(f"search {budget}", search_cfg=search_cfg)
    play("search policy", search_cfg=dataclasses.replace(cfg.search.for_evaluation(), root_uniform=0.0))

    task_rows = torch.repeat_interleave(torch.arange(len(tasks), device=cfg.device), args.episodes)  # [E]

    def policy_mean(obs: torch.Tensor, counted) -> torch.Tensor:
        with torch.no_grad():
            return torch.tanh(model.initial(obs, task_rows).loc)

    def uniform(obs: torch.Tensor, counted) -> torch.Tensor:
        return torch.rand(obs.shape[0], model.task_action_mask.shape[1], generator=generator) * 2 - 1

    def search_mean(evaluator: Evaluator):
        def act(obs: torch.Tensor, counted) -> torch.Tensor:
            out = search(model, obs, evaluator.task, evaluator.action_mask, evaluator.search_cfg,
                         cfg.decision_discount, generator, add_noise=False)
            return (out.improved_policy[..., None] * out.candidates).sum(1)  # [E, A]
        return act

    play("search mean", make_act=search_mean)
    play("policy mean", act=policy_mean)
    play("random", act=uniform)
    out = {**meta(), "path": str(args.path), "env_steps": env_steps, "episodes": args.episodes,
           "search": dataclasses.asdict(cfg.search), "returns": rows}
    print(f"wrote {_trained.write_result('search_gain', args.tag, out)}")


if __name__ == "__main__":
    main()
