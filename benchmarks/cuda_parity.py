"""Does a run's learning give the same numbers on CUDA as on CPU? The first updates, side by side.

    python benchmarks/cuda_parity.py                               # dmc-cartpole, the dmc preset, 20 updates
    python benchmarks/cuda_parity.py --suite dmc-walker --updates 50 --tag walker

One seed, one replay: a CPU trainer of the preset collects --rows rows per task with its acting
search, then a learner on CPU and one on CUDA start from the same weights and optimiser state
and take --updates updates on the same sampled batches (sampling, and the new priorities it
reads, stay on the CPU learner's side), with reanalyze keys drawn from CPU generators in the
same state, so both searches draw the same candidates and noise (`ezm.search.rng`). Recorded
per update: every loss part on both devices and their largest relative difference, and the
share of reanalyze positions whose searched action is the same on both (a near-tie in q can
flip an argmax, which float rounding alone then explains); at the end, the largest absolute
difference of any weight. Needs a CUDA device. Writes
benchmarks/results/cuda_parity[_TAG].json shaped as {"machine", "commit", "time", "config",
"suite", "device", "rows_per_task", "updates": [{"update", "cpu": {part: value}, DEVICE: {...},
"max_rel_diff", "same_action"}, ...], "max_weight_diff"}.
"""
from __future__ import annotations

import argparse
import copy
import json
import tempfile
from pathlib import Path

import torch
from _meta import REPO, meta

from ezm import config as config_lib
from ezm.learning.learner import Learner
from ezm.learning.targets import reanalyze
from ezm.replay.buffer import Batch
from ezm.workers.logger import RunLogger
from ezm.workers.trainer import Trainer


def twin(learner: Learner, cfg: config_lib.Config, num_tasks: int, device: str) -> Learner:
    """A learner on `device` in the state of `learner` (weights, target, optimiser, counters)."""
    other = Learner(copy.deepcopy(learner.model).to(device), config_lib.replace(cfg, device=device), num_tasks)
    other.load_state_dict(learner.state_dict())
    return other


def losses(learner: Learner, batch: Batch, generator: torch.Generator,
           env_steps: int) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """One update: its loss parts, its new priorities [B] and the searched actions [B, U+1, A] (on CPU)."""
    learner.observe(batch)
    targets = reanalyze(learner.target_model, batch, learner.cfg, learner.variance_range, generator,
                        learner.updates, env_steps)
    metrics, priority = learner.step(batch, targets, env_steps)
    parts = {k.split("/", 1)[1]: float(v) for k, v in metrics.items() if k.startswith("loss/")}
    return parts, priority.cpu(), targets.action.cpu()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="dmc-cartpole")
    parser.add_argument("--preset", default="dmc")
    parser.add_argument("--rows", type=int, default=300, help="replay rows per task collected first")
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--device", default="cuda",
                        help="the device compared with the CPU (cpu checks the script itself)")
    parser.add_argument("--tag", default="", help="suffix of the result file")
    parser.add_argument("overrides", nargs="*", help="section.field=value")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("cuda_parity.py needs a CUDA device (or --device cpu to check the script itself)")
    cfg = config_lib.build(args.preset, None, [f"env.suite={args.suite}", "train.progress=false", *args.overrides])
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(cfg, Path(folder))
        trainer.logger = RunLogger(Path(folder), since=0)
        while len(trainer.replay) < args.rows * len(trainer.tasks):
            trainer.collect()
        cpu = trainer.learner
        gpu = twin(cpu, cfg, len(trainer.tasks), args.device)
        cpu_keys, gpu_keys = torch.Generator().manual_seed(cfg.seed), torch.Generator().manual_seed(cfg.seed)
        for update in range(args.updates):
            batch = trainer.sample_batch()
            on_cpu, priority, cpu_action = losses(cpu, batch, cpu_keys, trainer.env_steps)
            on_gpu, _, gpu_action = losses(gpu, Batch(*(t.to(args.device) for t in batch)), gpu_keys, trainer.env_steps)
            trainer.replay.update_priorities(batch.index.cpu(), priority)
            rel = max(abs(on_cpu[k] - on_gpu[k]) / max(abs(on_cpu[k]), 1e-8) for k in on_cpu)
            same = (cpu_action - gpu_action).abs().amax(-1) < 1e-4  # [B, U+1]
            rows.append({"update": update + 1, "cpu": on_cpu, args.device: on_gpu, "max_rel_diff": rel,
                         "same_action": float(same.float().mean())})
            print(f"update {update + 1}: total {on_cpu['total']:.6f} (cpu) {on_gpu['total']:.6f} ({args.device}), "
                  f"max relative difference {rel:.2e}, same searched action {rows[-1]['same_action']:.3f}", flush=True)
        weight_diff = max(float((a - b.cpu()).abs().max()) for a, b in
                          zip(cpu.model.state_dict().values(), gpu.model.state_dict().values())
                          if a.is_floating_point())
        trainer.close()
    result = {**meta(), "config": config_lib.to_dict(cfg), "suite": args.suite, "device": args.device,
              "rows_per_task": args.rows, "updates": rows, "max_weight_diff": weight_diff}
    out = REPO / "benchmarks" / "results" / f"cuda_parity{'_' + args.tag if args.tag else ''}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"largest weight difference after {args.updates} updates: {weight_diff:.2e}\nwritten to {out}")


if __name__ == "__main__":
    main()
