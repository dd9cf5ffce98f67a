"""Where a trained cartpole policy holds the cart, and what its value thinks of the centre.

    python benchmarks/cartpole_centering.py RUN_DIR_OR_CHECKPOINT --episodes 8 --tag evalw1_s0

dm_control's cartpole reward multiplies uprightness by a centring factor
(1 + 0.1^((x / 2)^2)) / 2 of the cart position x, by a control factor (4 + 1 - u^2) / 5 and by
a small-velocity factor. This plays evaluation episodes (the run's search, no noise) and, over
the second half of every episode (the pole long balanced), reports the mean cart position, the
mean centring factor and the mean squared action. It then asks the model for the value of
the pole at rest upright with the cart at rest at positions -1.2 .. 1.2: a value that peaks
where the policy parks the cart, not at the centre, is a value learned only where the policy
goes. Cartpole observations are [x, cos, sin, x_dot, theta_dot].

Writes benchmarks/results/cartpole_centering[_TAG].json.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import _trained
from _meta import meta

from ezm.workers.evaluate import Evaluator
from ezm.workers.run import load_for_eval

POSITIONS = np.linspace(-1.2, 1.2, 13)  # cart positions of the value profile


def centring(x: np.ndarray) -> np.ndarray:
    """dm_control cartpole's centring factor of cart positions x."""
    return (1 + 0.1 ** ((x / 2) ** 2)) / 2


def main() -> None:
    args = _trained.parse_args(_trained.parser(__doc__, episodes=8))

    cfg, model, tasks, env_steps = load_for_eval(Path(args.path))
    cartpoles = [i for i, t in enumerate(tasks) if t.name.startswith("cartpole-")]
    if not cartpoles:
        raise SystemExit(f"{args.path}: no cartpole task among {[t.name for t in tasks]}")
    evaluator = Evaluator(tasks, cfg, args.episodes, seed=args.seed)
    generator = torch.Generator(device=cfg.device).manual_seed(args.seed)
    observations, actions, counted_steps = [], [], []  # per decision: [E, O], [E], [E]
    searcher = evaluator.searcher(model, generator)

    def act(obs: torch.Tensor, counted: np.ndarray) -> torch.Tensor:
        action = searcher(obs, counted)
        observations.append(obs.cpu().numpy())
        actions.append(action[:, 0].cpu().numpy())
        counted_steps.append(counted)
        return action

    with torch.no_grad():
        result = evaluator.run(model, generator, env_steps, act=act)
    evaluator.close()
    obs, action, counted = np.stack(observations), np.stack(actions), np.stack(counted_steps)  # [L, E, ...]
    late = np.zeros_like(counted)  # [L, E] the second half of each row's counted episode
    for row in range(counted.shape[1]):
        length = int(counted[:, row].sum())
        late[length // 2:length, row] = True

    out = {**meta(), "path": str(args.path), "env_steps": env_steps, "episodes": args.episodes, "tasks": {}}
    device = torch.device(cfg.device)
    for index in cartpoles:
        rows = slice(index * args.episodes, (index + 1) * args.episodes)
        mask = late[:, rows]
        x = obs[:, rows, 0][mask]
        rest = torch.zeros(len(POSITIONS), obs.shape[-1], device=device)  # [P, O] upright, at rest
        rest[:, 0] = torch.as_tensor(POSITIONS, dtype=rest.dtype)
        rest[:, 1] = 1.0
        with torch.no_grad():
            values = model.initial(rest, torch.full((len(POSITIONS),), index, device=device)).values.mean(-1)
        out["tasks"][tasks[index].name] = {
            "return": result.mean_return(index),
            "cart_position_mean": float(x.mean()),
            "cart_position_abs": float(np.abs(x).mean()),
            "centring_factor": float(centring(x).mean()),
            "action_squared": float((action[:, rows][mask] ** 2).mean()),
            "value_at_rest_by_position": {f"{p:+.1f}": float(v) for p, v in zip(POSITIONS, values.tolist())},
        }
    path = _trained.write_result("cartpole_centering", args.tag, out)
    for name, row in out["tasks"].items():
        profile = row["value_at_rest_by_position"]
        best = max(profile, key=profile.get)
        print(f"{name:<26} return {row['return']:6.1f}  cart at {row['cart_position_mean']:+.2f} "
              f"(centring {row['centring_factor']:.3f})  u^2 {row['action_squared']:.3f}  "
              f"value at rest: centre {profile['+0.0']:.0f}, best {profile[best]:.0f} at {best}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
