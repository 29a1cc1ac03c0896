"""What the render loss adds to a training step: a tiny TPVFormer on a small grid, with and without it.

The set-up of the evidence experiment (``configs/evidence_small.yaml``: tiny TPVFormer,
procedural synthetic scenes, the release's render-loss defaults) on ``--grid``
(``synthetic_small``, 50x50x4 voxels of 1.6 m, by default). One :class:`Trainer` per arm
(``std``: the 3D losses; ``render``: + GaussRender) takes ``--steps`` optimiser steps on the
same batches; each step is timed in CPU seconds of this process (``time.process_time``,
which other processes on the machine disturb less than wall time) after ``--warmup`` steps.
Reported: the median step of each arm and the render share ``(render - std) / render``.

    python benchmarks/train_step.py --threads 1 --steps 20
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ARMS = {"std": ["loss.render=false"], "render": ["loss.render=true"]}


def step_times(arm: str, args: argparse.Namespace, root: Path) -> list[float]:
    from torch.utils.data import DataLoader

    import gaussrender
    from gaussrender.data.collate import collate
    from gaussrender.train.builders import build_dataset, grid_of, prepare_synthetic
    from gaussrender.train.config import load_config
    from gaussrender.train.distributed import init_distributed, shutdown_distributed
    from gaussrender.train.loop import Trainer
    from gaussrender.train.run import build_initial_model

    # the config shipped with the gaussrender that runs (a before/after comparison runs this
    # script on another tree's source, whose config may know fewer keys)
    config = Path(gaussrender.__file__).resolve().parent / "configs" / "evidence_small.yaml"
    overrides = ARMS[arm] + [
        f"data.grid={args.grid}",
        f"data.root={root}",
        f"data.synthetic.num_scenes={args.scenes}",
        "data.synthetic.num_val_scenes=1",
        "loss.class_weighting=none",
        "train.seed=0",
        "train.val_every_epochs=0",
    ]
    cfg = load_config(config, overrides)
    info = init_distributed(cfg.train.device)
    try:
        prepare_synthetic(cfg.data, info.is_main)
        train_set = build_dataset(cfg.data, "train")
        trainer = Trainer(
            cfg,
            root / f"run_{arm}",
            build_initial_model(cfg),
            train_set,
            None,
            grid=grid_of(cfg),
            info=info,
            progress=False,
        )
        loader = DataLoader(train_set, batch_size=cfg.train.batch_size, shuffle=False, collate_fn=collate)
        batches = list(loader)
        times = []
        for i in range(args.warmup + args.steps):
            batch = batches[i % len(batches)]
            t0 = time.process_time()
            trainer.train_step(batch)
            if i >= args.warmup:
                times.append(time.process_time() - t0)
        return times
    finally:
        shutdown_distributed()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", default="synthetic_small")
    p.add_argument("--scenes", type=int, default=8)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="also write the result as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {arm: step_times(arm, args, Path(tmp)) for arm in ARMS}
    median = {arm: statistics.median(t) for arm, t in runs.items()}
    share = (median["render"] - median["std"]) / median["render"]
    print(f"grid {args.grid}, {args.threads} thread(s), {args.steps} steps after {args.warmup} warm-up (CPU s/step)")
    for arm, t in runs.items():
        print(f"  {arm:<7} median {median[arm]:.3f}  min {min(t):.3f}  max {max(t):.3f}")
    print(f"  render share of a step: {share:.1%} ({median['render'] - median['std']:.3f} s)")
    if args.out:
        import gaussrender as gr

        record = {
            "command": "python benchmarks/train_step.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "gaussrender": gr.__version__,
            "gaussrender_source": str(Path(gr.__file__).resolve().parent),
            "pythonpath": os.environ.get("PYTHONPATH", ""),
            "torch": torch.__version__,
            "threads": args.threads,
            "load_average_at_end": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "step_cpu_s": runs,
            "median_step_cpu_s": median,
            "render_share": share,
        }
        Path(args.out).write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
