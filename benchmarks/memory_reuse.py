"""What `reuse_freed_memory` (the recipes' glibc malloc thresholds) saves in the main job, and that it changes nothing.

Exact command of benchmarks/results/memory_reuse.md (from the repository root; writes the file and prints it):

    PYTHONPATH=. python benchmarks/memory_reuse.py --steps 15 --rounds 2

Each run is the main job's recipe in its own process, cut to `--steps` optimizer steps, without the before/after
comparison (so the process is the training loop, one evaluation and the start-up):

    python train_mtrec.py --output_dir <tmp>/<variant>-<round> --max_steps S --dev_comparison false --disable_tqdm true

``reuse`` is the recipe as shipped (`modeling_mtrec.training.recipes.reuse_freed_memory` raises glibc's mmap and
trim thresholds); ``glibc default`` is the same command with that function replaced by a no-op before the recipe
runs. The two variants alternate, their order swapped every round, so a load change of the shared machine hits both.
Reported per run: seconds per training step (the Trainer's `train_runtime` / steps), the process's user and system
CPU seconds and peak RSS (`getrusage` of the child), and the SHA-256 of the saved `model.safetensors`: equal digests
show that the trained weights are bit for bit the same, i.e. that only the memory handling changed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO_ROOT, machine_facts, parse_arguments, write_result  # noqa: E402

# Runs the recipe with `reuse_freed_memory` made a no-op: glibc keeps its own thresholds.
_WITHOUT = (
    "import runpy, sys; import modeling_mtrec.training.recipes as recipes; "
    "recipes.reuse_freed_memory = lambda: False; sys.argv = sys.argv[1:]; "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)
VARIANTS = ("reuse", "glibc default")


def run(variant: str, output_dir: Path, steps: int) -> dict:
    recipe = str(REPO_ROOT / "train_mtrec.py")
    args = ["--output_dir", str(output_dir), "--max_steps", str(steps), "--dev_comparison", "false",
            "--disable_tqdm", "true"]
    command = [sys.executable, recipe, *args] if variant == "reuse" else [sys.executable, "-c", _WITHOUT, recipe, *args]
    load_before = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise RuntimeError(f"{variant} run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    runtime = _train_runtime(done.stdout + done.stderr)
    digest = hashlib.sha256((output_dir / "model.safetensors").read_bytes()).hexdigest()
    return {
        "variant": variant, "wall_s": wall, "s_per_step": runtime / steps, "user_s": after.ru_utime - before.ru_utime,
        "sys_s": after.ru_stime - before.ru_stime,
        # the largest child's peak: run from `_isolated`, the recipe is this process's only child
        "peak_rss_mb": after.ru_maxrss / 1024, "sha256": digest, "steps": steps,
        "load": f"{load_before:.1f} / {os.getloadavg()[0]:.1f}",
    }


def _train_runtime(log: str) -> float:
    """The Trainer's `train_runtime` (seconds) from the recipe's log."""
    for line in log.splitlines():
        if "'train_runtime'" in line:
            return float(line.split("'train_runtime': '")[1].split("'")[0])
    raise RuntimeError("no train_runtime in the recipe's log")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    args = parse_arguments(parser, "memory_reuse.md")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            order = VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]
            for variant in order:
                result = _isolated(variant, Path(tmp) / f"{variant.replace(' ', '_')}-{round_}", args.steps)
                result["round"] = round_
                runs.append(result)
                print(f"round {round_} {variant}: {result['s_per_step']:.2f} s/step, sys {result['sys_s']:.1f} s, "
                      f"peak RSS {result['peak_rss_mb']:.0f} MB, weights {result['sha256'][:12]}", flush=True)
    write_result(args.output, report(runs, args))


def _isolated(variant: str, output_dir: Path, steps: int) -> dict:
    """`run` in a fresh Python process, so that `ru_maxrss` of its children is this run's peak alone."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import memory_reuse as m; "
        "print(json.dumps(m.run(sys.argv[2], m.Path(sys.argv[3]), int(sys.argv[4]))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).resolve().parent), variant, str(output_dir), str(steps)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(runs: list[dict], args) -> str:
    lines = [
        "# The main job's training step with and without `reuse_freed_memory` (glibc malloc thresholds)",
        "",
        f"Command: `{args.command}`",
        "",
        f"{machine_facts()}",
        "",
        f"Each run: `train_mtrec.py --max_steps {args.steps} --dev_comparison false --disable_tqdm true` in its own "
        "process (the synthetic demo corpus, all-MiniLM-L6-v2, batch 8, MTRec surgery); the variants alternate, order "
        "swapped every round. s/step = the Trainer's train_runtime / steps. Equal weight digests: the same trained "
        "model, bit for bit. Load: the 1-minute load average before / after a run (the machine may be shared: a "
        "load above 2 slows both variants; compare within a round).",
        "",
        "| round | variant | s/step | user CPU (s) | system CPU (s) | peak RSS (MB) | weights (SHA-256, first 12) | "
        "load before / after |",
        "|---:|---|---:|---:|---:|---:|---|---|",
    ]
    for r in runs:
        lines.append(f"| {r['round']} | {r['variant']} | {r['s_per_step']:.2f} | {r['user_s']:.0f} | {r['sys_s']:.1f} | "
                     f"{r['peak_rss_mb']:.0f} | `{r['sha256'][:12]}` | {r['load']} |")
    med = {v: statistics.median(r["s_per_step"] for r in runs if r["variant"] == v) for v in VARIANTS}
    sys_s = {v: statistics.median(r["sys_s"] for r in runs if r["variant"] == v) for v in VARIANTS}
    same = len({r["sha256"] for r in runs}) == 1
    lines += [
        "",
        f"- Median s/step: reuse {med['reuse']:.2f}, glibc default {med['glibc default']:.2f}: "
        f"{med['glibc default'] / med['reuse']:.2f}x faster with reuse.",
        f"- Median system CPU: reuse {sys_s['reuse']:.1f} s, glibc default {sys_s['glibc default']:.1f} s.",
        f"- Trained weights identical across all runs: {'yes' if same else 'NO'}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
