"""Make every shipped checkpoint: experiments/checkpoints/<Family>-<method>.pt.

Runs (or resumes) each given table config with `metarobot run`, then copies the training-seed-0
policy of every method that has one (meta-learners, rma, recurrent, domain_randomization, and the
ensemble and parameter average built from their experts) into experiments/checkpoints/.

    python experiments/make_checkpoints.py experiments/configs/inverted_pendulum_rand_params.toml
"""

from __future__ import annotations

import argparse
from pathlib import Path

from metarobot import registry
from metarobot.config import load_config
from metarobot.experiment import run_experiment

ROOT = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("configs", nargs="+", help="table configs to run and ship from")
    ap.add_argument("--dest", default=str(ROOT / "checkpoints"))
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    for path in args.configs:
        cfg = load_config(path)
        result = run_experiment(path, workers=args.workers, progress=True)
        family = cfg.family.split("/")[-1].rsplit("-v", 1)[0]
        seed = cfg.train_seeds[0]
        for m in cfg.methods:
            spec = registry.get(m)
            if spec.reference or m == "scratch":
                continue  # per-task references and untrained policies are not shipped
            policy = spec.load(cfg, seed, Path(result["out"]) / "checkpoints")
            target = dest / f"{family}-{m}.pt"
            policy.save(str(target))
            print(f"{target} ({policy.meta.get('env_steps', '?')} env steps)")


if __name__ == "__main__":
    main()
