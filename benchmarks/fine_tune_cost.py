"""What fine-tuning MTRec costs, and what it gives: full fine-tuning, the SpeedyFeed savings, frozen lower layers with
cached states, LoRA.

Command of benchmarks/results/fine_tune_cost.md (from the repository root; writes the file and prints it):

    PYTHONPATH=. python benchmarks/fine_tune_cost.py

Smoke run (proves the script works; the figures mean nothing):

    PYTHONPATH=. python benchmarks/fine_tune_cost.py --users 40 --batch 4 --speed-steps 2 --rss-steps 1 \
        --quality-steps 2 --seeds 0 --output /tmp/fine_tune_cost.md

Setting: as `training_speed.py` (the semi-synthetic MIND-sample corpus: real titles, simulated users with 50-click
histories and the main job's click model), batch 32, K = 4, `gradient_surgery="mtrec"`, all-MiniLM-L6-v2. Variants:

- ``default``: full fine-tuning, every news of a batch encoded as one padded block (the paper's training);
- ``buckets + history cache``: `length_buckets=4`, `history_cache_steps=T` (today's fastest);
- ``+ frozen k/6, cached states``: the same, with the embeddings and the first k layers frozen
  (`freeze_encoder_layers`, `--freeze-layers`, default 4) and their states computed once
  (`training.frozen_states`); the one-off cost of computing them is reported beside the table;
- ``LoRA``: adapters of rank `--lora-r` on query/value (`training.lora`), BERT frozen, user encoder and heads trained;
- ``LoRA + buckets + history cache``.

Three parts:

1. Speed, round robin: the same `--speed-steps` pre-collated batches go through one `MTRecTrainer` per variant,
   batch by batch, the variants' order rotated every batch (a load spike of the shared machine hits all alike).
   A step is `training_step` (forward, the two backward passes, the surgery) + the AdamW step; gathering the
   cached states of a batch's news is inside the step. Reported: median step time, samples/s, the ratio to
   ``default`` and to ``buckets + history cache``, trainable parameters and the optimizer's state bytes.
2. Peak RSS: each variant alone in a fresh process (`--rss-steps` steps on the same batches), the process's peak
   resident memory (`ru_maxrss`): model, caches, activations, optimizer state.
3. Quality: dev AUC / MRR / nDCG@10 (fast evaluation) after the same `--quality-steps` optimizer steps, for each
   variant and seed (mean ± std), each variant started from the same weights. AdamW, BERT at `--learning-rate`,
   LoRA adapters at `--lora-learning-rate`, user encoder and heads at `--head-learning-rate`.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import statistics
import tempfile
import time

import _common  # before torch / transformers: offline set-up, the repository on sys.path
import torch
from transformers import set_seed

from modeling_mtrec import MTRecModel, MTRecTrainer, MTRecTrainingArguments
from modeling_mtrec.data import simulate_mind_behaviors
from modeling_mtrec.models.mtrec.collator import MTRecCollator
from modeling_mtrec.models.mtrec.corpus import load_mind
from modeling_mtrec.training.frozen_states import FrozenStateCache, FrozenStateCollator
from modeling_mtrec.training.lora import apply_lora
from modeling_mtrec.training.recipes import reuse_freed_memory

NEGATIVES, HISTORY, BUCKETS = 4, 50, 4
METRICS = ("auc", "mrr", "ndcg@10")
CLICK_MODEL = {"category_boost": 3.0, "entity_boost": 10.0, "subcategory_boost": 30.0}  # training_speed.py's


def variants(freeze: int) -> dict[str, dict]:
    fast = {"buckets": BUCKETS, "history_cache": True}
    return {
        "default": {},
        "buckets + history cache": fast,
        f"+ frozen {freeze}/6, cached states": {**fast, "freeze": freeze},
        "LoRA": {"lora": True},
        "LoRA + buckets + history cache": {**fast, "lora": True},
    }


def build_corpus(tokenizer, args, work_dir: str):
    folders = simulate_mind_behaviors(
        args.mind_news, os.path.join(work_dir, "corpus"), seed=0, num_users=args.users,
        history_length=(HISTORY, HISTORY), **CLICK_MODEL,
    )
    return load_mind(tokenizer, train_dir=folders["train"], eval_dir=folders["dev"], max_history_length=HISTORY)


def build_trainer(name: str, spec: dict, corpus, tokenizer, args, *, seed: int, steps: int, output_dir: str):
    """A fresh model (seeded: every variant of a seed starts from the same weights) and its trainer, as the recipe
    builds them for this variant. Returns (trainer, seconds spent computing frozen states or None)."""
    set_seed(seed)
    model = MTRecModel.from_pretrained_encoder(
        args.encoder_path, id2category={i: c for c, i in corpus.category2id.items()},
        length_buckets=spec.get("buckets", 1), freeze_encoder_layers=spec.get("freeze", 0),
    )
    collator = MTRecCollator(corpus.news, num_negatives=NEGATIVES, pad_token_id=tokenizer.pad_token_id, seed=seed)
    states_seconds = None
    if spec.get("freeze"):
        start = time.perf_counter()
        collator = FrozenStateCollator(collator, FrozenStateCache.from_model(model, corpus.news))
        states_seconds = time.perf_counter() - start
    if spec.get("lora"):
        model = apply_lora(model, r=args.lora_r, alpha=2 * args.lora_r, dropout=0.1)
    training_args = MTRecTrainingArguments(
        output_dir=output_dir, gradient_surgery="mtrec", history_cache_steps=args.cache_steps if spec.get("history_cache") else 0,
        per_device_train_batch_size=args.batch, per_device_eval_batch_size=256,
        learning_rate=args.lora_learning_rate if spec.get("lora") else args.learning_rate,
        head_learning_rate=args.head_learning_rate, warmup_steps=0.1, max_steps=steps, logging_steps=steps,
        save_strategy="no", eval_strategy="no", report_to=[], seed=seed, use_cpu=True, disable_tqdm=True,
    )
    trainer = MTRecTrainer(model=model, args=training_args, train_dataset=corpus.train, eval_dataset=corpus.eval,
                           data_collator=collator)
    return trainer, states_seconds


def speed_batches(corpus, tokenizer, args) -> list[dict]:
    collator = MTRecCollator(
        corpus.news, num_negatives=NEGATIVES, pad_token_id=tokenizer.pad_token_id, seed=0, return_news_rows=True
    )
    samples = corpus.train.shuffle(seed=0).with_format(None)
    return [collator([samples[i] for i in range(start, start + args.batch)])
            for start in range(0, args.speed_steps * args.batch, args.batch)]


def step(trainer, batch: dict) -> float:
    """One optimizer step on a pre-collated batch; the seconds it took."""
    start = time.perf_counter()
    inputs = dict(batch)
    states = getattr(trainer.data_collator, "cache", None)
    if states is not None:  # what FrozenStateCollator adds to a batch
        inputs["news_hidden_states"] = states.gather(inputs["news_rows"], inputs["news_input_ids"].shape[1])
    trainer.training_step(trainer.model, inputs)
    trainer.optimizer.step()
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.state.global_step += 1  # the history cache's clock
    return time.perf_counter() - start


def prepare_for_steps(trainer) -> None:
    trainer.create_optimizer()
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop; training_step is called directly


def optimizer_state_bytes(optimizer) -> int:
    return sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t))


def speed_round_robin(corpus, tokenizer, args, specs: dict[str, dict]) -> list[dict]:
    batches = speed_batches(corpus, tokenizer, args)
    runs = {}
    for name, spec in specs.items():
        trainer, states_seconds = build_trainer(name, spec, corpus, tokenizer, args, seed=0, steps=len(batches),
                                                output_dir=os.path.join(args.work_dir, f"speed-{len(runs)}"))
        prepare_for_steps(trainer)
        runs[name] = {"trainer": trainer, "times": [], "states_seconds": states_seconds}
    names = list(runs)
    for i, batch in enumerate(batches):
        for name in names[i % len(names):] + names[: i % len(names)]:
            runs[name]["times"].append(step(runs[name]["trainer"], batch))
        print(f"batch {i}:", {n: f"{r['times'][-1]:.1f}s" for n, r in runs.items()}, flush=True)
    results = []
    for name, run in runs.items():
        trainer = run["trainer"]
        seconds = statistics.median(run["times"][1:] or run["times"])
        results.append({
            "variant": name, "step_seconds": seconds, "samples_per_second": args.batch / seconds,
            "trainable": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
            "optimizer_bytes": optimizer_state_bytes(trainer.optimizer), "states_seconds": run["states_seconds"],
        })
    return results


def _rss_child(name, spec, args, batches_path, queue) -> None:
    import _common as common  # a spawned process: offline set-up again

    common.configure(args.threads)
    reuse_freed_memory()  # as the parent and the recipes: its peak memory is part of what is measured
    tokenizer = common.load_tokenizer(args.encoder)[1]
    corpus = build_corpus(tokenizer, args, args.work_dir)
    batches = torch.load(batches_path)
    trainer, _ = build_trainer(name, spec, corpus, tokenizer, args, seed=0, steps=len(batches),
                               output_dir=os.path.join(args.work_dir, "rss"))
    prepare_for_steps(trainer)
    for batch in batches:
        step(trainer, batch)
    queue.put(peak_rss_bytes())


def peak_rss_bytes() -> int:
    """This process's peak resident memory. Linux's VmHWM: `ru_maxrss` would carry over the parent's peak (Linux keeps
    it across the fork and exec that start a spawned process)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) * 1024  # kB
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux; an upper bound here


def peak_rss(corpus, tokenizer, args, specs: dict[str, dict]) -> dict[str, int]:
    batches_path = os.path.join(args.work_dir, "rss_batches.pt")
    torch.save(speed_batches(corpus, tokenizer, args)[: args.rss_steps], batches_path)
    context = multiprocessing.get_context("spawn")
    peaks = {}
    for name, spec in specs.items():
        queue = context.Queue()
        process = context.Process(target=_rss_child, args=(name, spec, args, batches_path, queue))
        process.start()
        process.join()
        if process.exitcode != 0:
            raise RuntimeError(f"the peak-RSS process of {name!r} failed (exit code {process.exitcode})")
        peaks[name] = queue.get(timeout=60)
        print(f"peak RSS {name}: {peaks[name] / 2**30:.2f} GiB", flush=True)
    return peaks


def quality(corpus, tokenizer, args, specs: dict[str, dict]):
    """Yields each (seed, variant) run's dev metrics as it ends."""
    for seed in [int(s) for s in args.seeds.split(",")]:
        for name, spec in specs.items():
            trainer, _ = build_trainer(name, spec, corpus, tokenizer, args, seed=seed, steps=args.quality_steps,
                                       output_dir=os.path.join(args.work_dir, f"quality-{seed}"))
            before = trainer.evaluate(metric_key_prefix="before") if name == "default" else {}
            trainer.train()
            metrics = trainer.evaluate()
            result = {"variant": name, "seed": seed, **{k: metrics[f"eval_{k}"] for k in METRICS},
                      **{f"before_{k}": before[f"before_{k}"] for k in METRICS if before}}
            print(result, flush=True)
            yield result


def mean_std(values: list[float], digits: int = 4) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def report(args, tokenizer) -> None:
    """Runs the three parts, rewriting the results file after each part and each quality run (a cut run leaves its
    partial table)."""
    corpus = build_corpus(tokenizer, args, args.work_dir)
    specs = variants(args.freeze_layers)
    results = {"speed": [], "peaks": {}, "scores": []}

    def write() -> None:
        _common.write_result(args.output, render(args, corpus, specs, **results))

    if not args.skip_speed:
        results["speed"] = speed_round_robin(corpus, tokenizer, args, specs)
        write()
    if not args.skip_rss:
        results["peaks"] = peak_rss(corpus, tokenizer, args, specs)
        write()
    if not args.skip_quality:
        for result in quality(corpus, tokenizer, args, specs):
            results["scores"].append(result)
            write()
    write()


def render(args, corpus, specs: dict[str, dict], *, speed: list[dict], peaks: dict[str, int], scores: list[dict]) -> str:
    lines = [
        "# What fine-tuning MTRec costs: full, SpeedyFeed savings, frozen layers with cached states, LoRA (CPU)",
        "",
        f"Command: `{args.command}`",
        "",
        f"Machine: {_common.machine_facts()}.",
        "",
        f"Corpus: semi-synthetic MIND sample ({len(corpus.news):,} real titles, {len(corpus.train):,} training samples, "
        f"{len(corpus.eval):,} dev impressions; {HISTORY}-click histories). {args.encoder_name}, batch {args.batch}, "
        f"K = {NEGATIVES}, gradient_surgery = mtrec. Length buckets {BUCKETS}; history cache T = {args.cache_steps}; "
        f"LoRA r = {args.lora_r}, alpha = {2 * args.lora_r}, dropout 0.1 on query/value. AdamW: BERT lr "
        f"{args.learning_rate:g}, LoRA lr {args.lora_learning_rate:g}, user encoder and heads "
        f"{args.head_learning_rate:g} (10% warm-up, linear decay). Freed memory reused as in the recipes "
        "(`training.recipes.reuse_freed_memory`).",
        "",
    ]
    by_variant = {name: [r for r in scores if r["variant"] == name] for name in specs}
    default_auc = {r["seed"]: r["auc"] for r in by_variant["default"]}
    speed_of = {r["variant"]: r for r in speed}
    lines += [
        f"Speed: {args.speed_steps} batches per variant, round robin, median after step 1. Peak RSS: each variant "
        f"alone in a fresh process, {args.rss_steps} steps. Quality: {args.quality_steps} optimizer steps, seeds "
        f"{args.seeds} (mean ± std; the runs done so far: {len(scores)} of "
        f"{len(specs) * len(args.seeds.split(','))}).",
        "",
        "| variant | samples/s | x default | x buckets + cache | peak RSS (GiB) | trainable parameters | "
        "optimizer state (MiB) | dev AUC | AUC - default AUC | MRR | nDCG@10 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    base, fastest = speed_of.get("default"), speed_of.get("buckets + history cache")
    for name in specs:
        s, runs = speed_of.get(name), by_variant[name]
        paired = [r["auc"] - default_auc[r["seed"]] for r in runs if r["seed"] in default_auc]
        cells = [
            f"{s['samples_per_second']:.2f}" if s else "",
            f"{s['samples_per_second'] / base['samples_per_second']:.2f}" if s else "",
            f"{s['samples_per_second'] / fastest['samples_per_second']:.2f}" if s else "",
            f"{peaks[name] / 2**30:.2f}" if name in peaks else "",
            f"{s['trainable']:,}" if s else "",
            f"{s['optimizer_bytes'] / 2**20:.1f}" if s else "",
            mean_std([r["auc"] for r in runs]) if runs else "",
            mean_std(paired) if paired else "",
            mean_std([r["mrr"] for r in runs]) if runs else "",
            mean_std([r["ndcg@10"] for r in runs]) if runs else "",
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if by_variant["default"] and "before_auc" in by_variant["default"][0]:
        lines += ["", f"Dev AUC before training: {mean_std([r['before_auc'] for r in by_variant['default']])}."]
    frozen = [r for r in speed if r["states_seconds"] is not None]
    if frozen:
        lines += ["", f"Computing the frozen states of all {len(corpus.news):,} news once (not in samples/s): "
                      f"{frozen[0]['states_seconds']:.1f} s."]
    if scores:
        lines += ["", "Dev AUC per seed:", ""]
        lines += [f"- {name}: " + ", ".join(f"{r['auc']:.4f} (seed {r['seed']})" for r in runs)
                  for name, runs in by_variant.items() if runs]
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=1500, help="simulated training users of the corpus")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--cache-steps", type=int, default=10, help="T of the history cache")
    parser.add_argument("--freeze-layers", type=int, default=4, help="k of the frozen variant (of MiniLM's 6)")
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--speed-steps", type=int, default=5)
    parser.add_argument("--rss-steps", type=int, default=2)
    parser.add_argument("--quality-steps", type=int, default=20)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--learning-rate", type=float, default=2e-4, help="BERT's learning rate (training_speed.py's)")
    parser.add_argument("--lora-learning-rate", type=float, default=1e-3,
                        help="the LoRA adapters' learning rate (adapters start at B = 0 and are usually trained faster)")
    parser.add_argument("--head-learning-rate", type=float, default=1e-2)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    args = _common.parse_arguments(parser, "fine_tune_cost.md", encoder=True)
    reuse_freed_memory()  # as the recipes do: the step's arithmetic is the same, its page faults go
    if not os.path.isfile(args.mind_news):
        raise SystemExit(f"{args.mind_news} not found: pass --mind-news (a MIND news.tsv)")
    args.encoder_path, tokenizer = _common.load_tokenizer(args.encoder)
    args.encoder_name = args.encoder or "all-MiniLM-L6-v2"
    args.work_dir = tempfile.mkdtemp()  # holds the simulated corpus of licensed news: deleted at the end
    try:
        report(args, tokenizer)
    finally:
        shutil.rmtree(args.work_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
