"""What one update costs: the median milliseconds of sampling, reanalyze and the optimiser step.

    python benchmarks/update_cost.py                          # dmc-walker, the dmc preset, 1 torch thread
    python benchmarks/update_cost.py --suite dmc-cartpole --threads 2 --tag cartpole learn.batch_size=64

A fresh model of the preset collects --rows replay rows per task with its (untrained) acting
search, then the same sampled batch is reanalyzed and stepped on --repeats times each; the
model's weights change with the steps, its cost does not. An update of the single process is
sample + reanalyze + step (collection and evaluation come on top, a few percent at the
presets' replay ratios). Other processes may share the machine: the 1-minute load average
before and after is recorded beside the figures. Writes benchmarks/results/update_cost[_TAG].json
shaped as {"machine", "commit", "time", "config", "suite", "torch_threads", "repeats",
"load_average", "ms": {"sample", "reanalyze", "step", "update"}, "updates_per_s"}.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from _meta import REPO, meta

from ezm import config as config_lib
from ezm.learning.targets import reanalyze
from ezm.workers.logger import RunLogger
from ezm.workers.trainer import Trainer


def median_ms(call: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="dmc-walker")
    parser.add_argument("--preset", default="dmc")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--rows", type=int, default=600, help="replay rows per task collected first")
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--tag", default="", help="suffix of the result file")
    parser.add_argument("overrides", nargs="*", help="section.field=value")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = config_lib.build(args.preset, None, [f"env.suite={args.suite}", "train.progress=false", *args.overrides])
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(cfg, Path(folder))
        trainer.logger = RunLogger(Path(folder), since=0)
        while len(trainer.replay) < args.rows * len(trainer.tasks):
            trainer.collect()
        learner, generator = trainer.learner, torch.Generator(device=cfg.device).manual_seed(0)
        load_before = os.getloadavg()[0]
        batch = trainer.sample_batch()

        def targets():
            return reanalyze(learner.target_model, batch, cfg, learner.variance_range, generator, 0, 0)

        fixed = targets()
        ms = {"sample": median_ms(trainer.sample_batch, args.repeats),
              "reanalyze": median_ms(targets, args.repeats),
              "step": median_ms(lambda: learner.step(batch, fixed, trainer.env_steps), args.repeats)}
        load_after = os.getloadavg()[0]
        trainer.close()
    ms["update"] = ms["sample"] + ms["reanalyze"] + ms["step"]
    result = {**meta(), "config": config_lib.to_dict(cfg), "suite": args.suite, "torch_threads": args.threads,
              "repeats": args.repeats, "load_average": [load_before, load_after], "ms": ms,
              "updates_per_s": 1e3 / ms["update"]}
    out = REPO / "benchmarks" / "results" / f"update_cost{'_' + args.tag if args.tag else ''}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(" ".join(f"{k} {v:.1f} ms" for k, v in ms.items()) + f"; {result['updates_per_s']:.2f} updates/s; "
          f"load {load_before:.1f} -> {load_after:.1f}\nwritten to {out}")


if __name__ == "__main__":
    main()
