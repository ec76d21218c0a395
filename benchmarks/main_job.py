"""The main job as a new user runs it, over several seeds: does training beat the untrained model and a baseline?

    PYTHONPATH=. python benchmarks/main_job.py --seeds 0 1 2 --threads 2

Each run is the recipe with its defaults, in its own process, on a fresh output folder:

    python train_mtrec.py --output_dir <tmp>/seed<s> --seed <s> --synthetic_seed <s> --disable_tqdm true [EXTRA]

so a seed changes both the synthetic corpus (users, news, clicks) and the training (head initialisation, data
order, negatives); `--extra` appends recipe flags (last on the command line), e.g.
``--extra --head_learning_rate 1e-3 --length_buckets 4``. The recipe scores the same dev impressions
with the category-share baseline, the model before training and the model after, and writes them to
``dev_comparison.json``; this script collects them with the wall time of the whole run (process start to exit:
imports, corpus, tokenisation, both evaluations, training, saving) and the 1-minute load average before and after
it, since the machine may be shared.

Writes `benchmarks/results/main_job.md` (per seed, then mean ± std and the smallest gains) and `main_job.json`
(every run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO_ROOT, machine_facts, parse_arguments, write_result  # noqa: E402

ROWS = {"category_share_baseline": "category-share baseline", "untrained": "MTRec before training",
        "trained": "MTRec after training"}
METRICS = ("auc", "mrr", "ndcg@5", "ndcg@10")


def run_once(seed: int, folder: str, threads: int, extra: list[str]) -> dict:
    """One recipe run; returns its dev_comparison.json with the wall time and the load around it."""
    out = os.path.join(folder, f"seed{seed}")
    command = [sys.executable, "train_mtrec.py", "--output_dir", out, "--seed", str(seed),
               "--synthetic_seed", str(seed), "--disable_tqdm", "true", *extra]
    # The repository's package, not an installed one; offline (set by _common, inherited).
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(REPO_ROOT))
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"seed {seed} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    comparison = json.loads(Path(out, "dev_comparison.json").read_text())
    return {"seed": seed, "wall_s": wall, "load_before": load_before, "load_after": os.getloadavg()[0],
            "comparison": comparison}


def to_markdown(runs: list[dict], args: argparse.Namespace) -> str:
    extra = "".join(f" {flag}" for flag in args.extra)
    lines = [
        "# The main job over seeds: MTRec before / after training vs a non-neural baseline (dev metrics)",
        "",
        f"Command: `{args.command}`",
        "",
        f"Each run: `python train_mtrec.py --output_dir <tmp>/seed<s> --seed <s> --synthetic_seed <s> --disable_tqdm "
        f"true{extra}` (the recipe's defaults otherwise), with OMP_NUM_THREADS={args.threads}. The three rows of a "
        "run are scored on the same dev impressions. Wall time: the whole recipe process (imports, corpus, "
        "tokenisation, evaluation before training, training, saving, evaluation after training, baseline). Load: "
        "1-minute load average before / after the run (the machine may be shared; a load above the core count "
        "inflates the wall time).",
        "",
        machine_facts(),
        "",
        "| seed | model | AUC | MRR | nDCG@5 | nDCG@10 | dev impressions | wall (s) | load |",
        "|---|---|---|---|---|---|---|---:|---|",
    ]
    for run in runs:
        for key, name in ROWS.items():
            row = run["comparison"][key]
            timing = (f"{run['wall_s']:.0f} | {run['load_before']:.1f} / {run['load_after']:.1f}"
                      if key == "trained" else " | ")
            lines.append(f"| {run['seed']} | {name} | " + " | ".join(f"{row[m]:.4f}" for m in METRICS)
                         + f" | {row['num_impressions']} | {timing} |")

    def mean_std(values: list[float]) -> str:
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.4f} ± {spread:.4f}"

    lines += ["", "Mean ± std (sample std) over the seeds:", "", "| model | AUC | MRR | nDCG@5 | nDCG@10 |",
              "|---|---|---|---|---|"]
    for key, name in ROWS.items():
        lines.append(f"| {name} | " + " | ".join(mean_std([r["comparison"][key][m] for r in runs]) for m in METRICS)
                     + " |")
    lines.append("")
    for key in ("untrained", "category_share_baseline"):
        gains = [r["comparison"]["trained"]["auc"] - r["comparison"][key]["auc"] for r in runs]
        lines.append(f"- AUC after training minus {ROWS[key]}, per seed: {', '.join(f'{g:+.4f}' for g in gains)} "
                     f"(smallest {min(gains):+.4f}).")
    walls = [r["wall_s"] for r in runs]
    lines += [f"- Wall time per run: {', '.join(f'{w:.0f} s' for w in walls)} (max {max(walls):.0f} s).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="recipe flags for every run (last)")
    args = parse_arguments(parser, "main_job.md", threads=2)
    runs = []
    with tempfile.TemporaryDirectory(prefix="main-job-") as folder:
        for seed in args.seeds:
            runs.append(run_once(seed, folder, args.threads, args.extra))
            trained = runs[-1]["comparison"]["trained"]["auc"]
            print(f"seed {seed}: {runs[-1]['wall_s']:.0f} s, AUC after training {trained:.4f}", flush=True)
    write_result(args.output, to_markdown(runs, args))
    Path(args.output).with_suffix(".json").write_text(json.dumps(runs, indent=2) + "\n")


if __name__ == "__main__":
    main()
