"""Training speed of MTRec with SpeedyFeed-style savings: length-aware encoding and the history-vector cache.

Exact command of benchmarks/results/training_speed.md (from the repository root; writes the file and prints it):

    PYTHONPATH=. python benchmarks/training_speed.py

Setting: the semi-synthetic MIND-sample corpus (the real titles of ../shared/data/mind_sample,
simulated users with 50-click histories and the main job's click model, `simulate_mind_behaviors`), batches of 32 training samples, K = 4
negatives, `gradient_surgery="mtrec"` (the default), one `MTRecTrainer.train()` per run. Variants:

- ``default``: every distinct news of a batch is encoded, as one padded block (the paper's training);
- ``length buckets``: `MTRecConfig.length_buckets=4`, titles encoded in up to 4 groups of similar length;
- ``history cache``: `history_cache_steps=T` (`--cache-steps`), history news encoded in the last T optimizer steps
  are reused without gradient;
- ``both``.

Two parts:

1. Speed on all-MiniLM-L6-v2 (6 layers), one seed: the same `--speed-steps` pre-collated batches go through one
   `MTRecTrainer` per variant, round-robin (batch by batch, the variants' order rotated every batch) so that a
   load spike on this shared machine hits all variants alike. A step is `training_step` (forward, the two
   backward passes and the surgery) + the AdamW step; collation is left out (the same for every variant).
   Reported: encoder title passes per training sample (rows that went through BERT / samples: the whole run,
   and the steady state after the first step, when the cache has filled), padded tokens per sample, median
   step time and samples/s, and the ratio to ``default``.
2. Quality and speed on its 2-layer cut (to fit 3 seeds on 2 CPU cores), BERT at lr 2e-4 and the user encoder and
   heads at 1e-2 (`--learning-rate`, `--head-learning-rate`): dev AUC / MRR / nDCG@10 over the dev impressions
   (fast evaluation) before training and after `--quality-steps` optimizer steps, mean ± std over seeds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

import _common  # before torch / transformers: offline set-up, the repository on sys.path
from transformers import BertConfig, set_seed

from modeling_mtrec import MTRecConfig, MTRecModel, MTRecTrainer, MTRecTrainingArguments
from modeling_mtrec.data import simulate_mind_behaviors
from modeling_mtrec.models.mtrec.collator import MTRecCollator
from modeling_mtrec.models.mtrec.corpus import load_mind

BATCH, NEGATIVES, HISTORY, BUCKETS = 32, 4, 50, 4
VARIANTS = ("default", "length buckets", "history cache", "both")
METRICS = ("auc", "mrr", "ndcg@10")


# The main job's click model (train_mtrec.py's demo corpus) on the real titles: tastes that titles show (a favourite
# subcategory, favourite entities) more than the favourite category, so that a few dozen steps move dev AUC and a
# cost of stale history vectors could show.
CLICK_MODEL = {"category_boost": 3.0, "entity_boost": 10.0, "subcategory_boost": 30.0}


def build_corpus(tokenizer, news_tsv: str, work_dir: str):
    folders = simulate_mind_behaviors(
        news_tsv, os.path.join(work_dir, "corpus"), seed=0, num_users=1500, history_length=(HISTORY, HISTORY),
        **CLICK_MODEL,
    )
    return load_mind(tokenizer, train_dir=folders["train"], eval_dir=folders["dev"], max_history_length=HISTORY)


def run(corpus, tokenizer, variant: str, seed: int, steps: int, layers: int | None, args, work_dir: str) -> dict:
    """One `MTRecTrainer.train()` of `steps` optimizer steps; counts what reached BERT; dev metrics if asked."""
    set_seed(seed)
    buckets = BUCKETS if variant in ("length buckets", "both") else 1
    cache_steps = args.cache_steps if variant in ("history cache", "both") else 0
    id2category = {i: c for c, i in corpus.category2id.items()}
    if layers == 0:  # --quality-encoder scratch: a small BERT from scratch, no dropout (it then learns in few steps)
        encoder = BertConfig(
            vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=128, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        )
        model = MTRecModel(MTRecConfig(encoder_config=encoder, id2category=id2category, head_dropout=0.0,
                                       user_attention_dim=64, length_buckets=buckets))
    else:
        model = MTRecModel.from_pretrained_encoder(
            args.encoder_path, encoder_kwargs={"num_hidden_layers": layers} if layers else None,
            id2category=id2category, length_buckets=buckets,
        )
    rows, tokens = [], []

    def count(module, args, kwargs, output) -> None:  # returns None: the output is left as it is
        rows.append(kwargs["input_ids"].shape[0])
        tokens.append(kwargs["input_ids"].numel())

    model.news_encoder.register_forward_hook(count, with_kwargs=True)
    training_args = MTRecTrainingArguments(
        output_dir=os.path.join(work_dir, f"{variant}-{seed}-{layers}"), gradient_surgery="mtrec",
        history_cache_steps=cache_steps, per_device_train_batch_size=BATCH, per_device_eval_batch_size=256,
        learning_rate=args.learning_rate, head_learning_rate=args.head_learning_rate, warmup_steps=0.1,
        max_steps=steps, logging_steps=steps,
        save_strategy="no", eval_strategy="no", report_to=[], seed=seed, use_cpu=True, disable_tqdm=True,
    )
    collator = MTRecCollator(corpus.news, num_negatives=NEGATIVES, pad_token_id=tokenizer.pad_token_id, seed=seed)
    trainer = MTRecTrainer(
        model=model, args=training_args, train_dataset=corpus.train, eval_dataset=corpus.eval, data_collator=collator
    )
    # Before training: how far training moved the dev metrics. Every variant of a seed starts from the same weights,
    # so the default's run measures it for all.
    before = trainer.evaluate(metric_key_prefix="before") if args.evaluate and variant == "default" else {}
    rows.clear()
    tokens.clear()
    train_metrics = trainer.train().metrics
    samples = steps * BATCH
    result = {
        "variant": variant, "seed": seed, "layers": layers or 6,
        "title_passes_per_sample": sum(rows) / samples,
        "padded_tokens_per_sample": sum(tokens) / samples,
        "samples_per_second": train_metrics["train_samples_per_second"],
    }
    if args.evaluate:
        rows.clear()
        metrics = trainer.evaluate()
        result.update({k: metrics[f"eval_{k}"] for k in METRICS})
        result.update({f"before_{k}": before[f"before_{k}"] for k in METRICS if before})
    return result


def speed_round_robin(corpus, tokenizer, args) -> list[dict]:
    """Part 1: one trainer per variant, the same batches, interleaved; see the module docstring."""
    collator = MTRecCollator(
        corpus.news, num_negatives=NEGATIVES, pad_token_id=tokenizer.pad_token_id, seed=0, return_news_rows=True
    )
    samples = corpus.train.shuffle(seed=0).with_format(None)
    batches = [collator([samples[i] for i in range(start, start + BATCH)])
               for start in range(0, args.speed_steps * BATCH, BATCH)]
    runs = {}
    for variant in VARIANTS:
        set_seed(0)
        model = MTRecModel.from_pretrained_encoder(
            args.encoder_path, id2category={i: c for c, i in corpus.category2id.items()},
            length_buckets=BUCKETS if variant in ("length buckets", "both") else 1,
        )
        counts = {"rows": [], "tokens": []}

        def count(module, a, kwargs, output, counts=counts) -> None:  # returns None: output left as it is
            counts["rows"].append(kwargs["input_ids"].shape[0])
            counts["tokens"].append(kwargs["input_ids"].numel())

        model.news_encoder.register_forward_hook(count, with_kwargs=True)
        training_args = MTRecTrainingArguments(
            output_dir=os.path.join(args.work_dir, f"speed-{variant}"), gradient_surgery="mtrec",
            history_cache_steps=args.cache_steps if variant in ("history cache", "both") else 0,
            learning_rate=args.learning_rate, report_to=[], use_cpu=True, save_strategy="no",
        )
        trainer = MTRecTrainer(model=model, args=training_args, data_collator=collator)
        trainer.create_optimizer()
        trainer.current_gradient_accumulation_steps = 1  # set by the training loop; training_step is called directly
        runs[variant] = {"trainer": trainer, "counts": counts, "times": [], "rows": [], "tokens": []}
    for i, batch in enumerate(batches):
        order = VARIANTS[i % len(VARIANTS):] + VARIANTS[: i % len(VARIANTS)]
        for variant in order:
            run = runs[variant]
            trainer, counts = run["trainer"], run["counts"]
            counts["rows"].clear()
            counts["tokens"].clear()
            start = time.perf_counter()
            trainer.training_step(trainer.model, dict(batch))
            trainer.optimizer.step()
            trainer.optimizer.zero_grad(set_to_none=True)
            run["times"].append(time.perf_counter() - start)
            trainer.state.global_step += 1  # the history cache's clock
            run["rows"].append(sum(counts["rows"]))
            run["tokens"].append(sum(counts["tokens"]))
        print(f"batch {i}:", {v: f"{r['times'][-1]:.1f}s/{r['rows'][-1]} titles" for v, r in runs.items()}, flush=True)
    results = []
    for variant, run in runs.items():
        step = statistics.median(run["times"][1:] or run["times"])
        results.append({
            "variant": variant,
            "title_passes_per_sample": sum(run["rows"]) / (BATCH * len(batches)),
            "steady_title_passes_per_sample": statistics.mean(run["rows"][1:] or run["rows"]) / BATCH,
            "padded_tokens_per_sample": sum(run["tokens"]) / (BATCH * len(batches)),
            "step_seconds": step,
            "samples_per_second": BATCH / step,
        })
    return results


def mean_std(values: list[float], digits: int = 4) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache-steps", type=int, default=10, help="T of the history cache")
    parser.add_argument("--speed-steps", type=int, default=5)
    parser.add_argument("--quality-steps", type=int, default=20)
    parser.add_argument("--quality-layers", type=int, default=2,
                        help="layers of the encoder cut for part 2; 0: a small BERT from scratch (hidden 64, 2 "
                             "layers, no dropout) that learns within a few dozen steps")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--quality-variants", default=",".join(VARIANTS),
                        help="variants of part 2, comma-separated (default: all four; 'length buckets' alone gives "
                             "the default's vectors up to float rounding, tested, so it can be left out to save time)")
    parser.add_argument("--learning-rate", type=float, default=2e-4, help="the encoder's (BERT's) learning rate")
    parser.add_argument("--head-learning-rate", type=float, default=1e-2,
                        help="learning rate of the weights the encoder did not bring (user encoder, heads), as in the "
                             "main job (MTRecTrainingArguments.head_learning_rate)")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    args = _common.parse_arguments(parser, "training_speed.md", encoder=True)
    if not os.path.isfile(args.mind_news):
        raise SystemExit(f"{args.mind_news} not found: pass --mind-news (a MIND news.tsv)")

    args.encoder_path, tokenizer = _common.load_tokenizer(args.encoder)
    args.encoder_name = args.encoder or "all-MiniLM-L6-v2"
    work_dir = args.work_dir = tempfile.mkdtemp()  # holds the simulated corpus of licensed news: deleted at the end
    try:
        report(args, tokenizer, work_dir)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def report(args, tokenizer, work_dir: str) -> None:
    corpus = build_corpus(tokenizer, args.mind_news, work_dir)
    lines = [
        "# MTRec training speed: length-aware encoding and the history-vector cache (CPU)",
        "",
        f"Command: `{args.command}`",
        "",
        f"Machine: {_common.machine_facts()}.",
        "",
        f"Corpus: semi-synthetic MIND sample ({len(corpus.news):,} real titles, {len(corpus.train):,} training "
        f"samples, {len(corpus.eval):,} dev impressions; {HISTORY}-click histories). Batch {BATCH}, K = {NEGATIVES}, "
        f"gradient_surgery = mtrec, AdamW lr {args.learning_rate:g} for BERT and {args.head_learning_rate:g} for the "
        f"user encoder and heads (10% warm-up, linear decay). Length buckets: "
        f"{BUCKETS}; history cache: T = {args.cache_steps} optimizer steps. Click model: the main job's "
        f"({', '.join(f'{k} {v:g}' for k, v in CLICK_MODEL.items())}).",
        "",
    ]
    if not args.skip_speed:
        speed = speed_round_robin(corpus, tokenizer, args)
        base = speed[0]
        lines += [
            f"## 1. Speed, {args.encoder_name}, {args.speed_steps} batches per variant, round-robin (seed 0)",
            "",
            "| variant | title passes / sample (run) | title passes / sample (after step 1) | padded tokens / sample | "
            "step (s, median after step 1) | samples/s | x default samples/s |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in speed:
            lines.append(
                f"| {r['variant']} | {r['title_passes_per_sample']:.1f} | {r['steady_title_passes_per_sample']:.1f} | "
                f"{r['padded_tokens_per_sample']:.0f} | {r['step_seconds']:.1f} | {r['samples_per_second']:.2f} | "
                f"{r['samples_per_second'] / base['samples_per_second']:.2f} |"
            )
        lines.append("")
        print("\n".join(lines), flush=True)
    if not args.skip_quality:
        args.evaluate = True
        seeds = [int(s) for s in args.seeds.split(",")]
        quality_variants = [v.strip() for v in args.quality_variants.split(",")]
        if "default" not in quality_variants or not set(quality_variants) <= set(VARIANTS):
            raise SystemExit(f"--quality-variants: 'default' and any of {VARIANTS}, got {quality_variants}")
        results = [
            run(corpus, tokenizer, v, seed, args.quality_steps, args.quality_layers, args, work_dir)
            for seed in seeds for v in quality_variants
        ]
        lines += [
            "## 2. Quality and speed, "
            + (f"{args.encoder_name} cut to {args.quality_layers} layers" if args.quality_layers
               else "a BERT from scratch (hidden 64, 2 layers, no dropout)")
            + f", {args.quality_steps} "
            f"optimizer steps, seeds {args.seeds} (mean ± std)",
            "",
            "| variant | title passes / sample | samples/s | x default samples/s | dev AUC | AUC - default AUC | "
            "MRR | nDCG@10 |",
            "|---|---|---|---|---|---|---|---|",
        ]
        by_variant = {v: [r for r in results if r["variant"] == v] for v in quality_variants}
        default = {r["seed"]: r for r in by_variant["default"]}
        lines.append(
            f"| before training (step 0) | | | | {mean_std([r['before_auc'] for r in by_variant['default']])} | "
            f"{mean_std([r['before_auc'] - r['auc'] for r in by_variant['default']])} | "
            f"{mean_std([r['before_mrr'] for r in by_variant['default']])} | "
            f"{mean_std([r['before_ndcg@10'] for r in by_variant['default']])} |"
        )
        for v, runs in by_variant.items():
            speedups = [r["samples_per_second"] / default[r["seed"]]["samples_per_second"] for r in runs]
            deltas = [r["auc"] - default[r["seed"]]["auc"] for r in runs]
            lines.append(
                f"| {v} | {mean_std([r['title_passes_per_sample'] for r in runs], 1)} | "
                f"{mean_std([r['samples_per_second'] for r in runs], 2)} | {mean_std(speedups, 2)} | "
                f"{mean_std([r['auc'] for r in runs])} | {mean_std(deltas)} | "
                f"{mean_std([r['mrr'] for r in runs])} | {mean_std([r['ndcg@10'] for r in runs])} |"
            )
        lines += ["", "Dev AUC per seed (" + ", ".join(f"seed {seed}" for seed in seeds) + "):", ""]
        lines += [f"- {v}: " + ", ".join(f"{r['auc']:.4f}" for r in runs) for v, runs in by_variant.items()]
        lines.append("")
    _common.write_result(args.output, "\n".join(lines))


if __name__ == "__main__":
    main()
