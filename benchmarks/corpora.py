"""MTRec on an EB-NeRD-shaped corpus: with and without the multi-field option, with and without the sentiment task.

Exact command of benchmarks/results/corpora.md (from the repository root; writes the file and prints it; 25.6 min on a
2-core machine whose other core ran another job):

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/corpora.py --mind-news /work/shared/data/mind_sample/news.tsv \
        --steps 60 --seeds 0 1 2 --users 600 --batch-size 16 --lr 1e-4 --max-title-length 16 --freeze-layers 5 \
        --threads 1

Why this size: 4 variants x 3 seeds had to fit ~25 minutes at one thread, and the multi-field rows need enough steps
for their randomly initialised category/entity embeddings and field attention to train. Timed 2- and 6-step smoke
runs here (batch 16, one thread): with 4 frozen layers and 30-token titles a step took ~7 s, with 16-token titles ~4 s;
with 5 frozen layers and 16-token titles ~1.7 s (the full run: 89-115 s of training per 60-step run). Hence
`--freeze-layers 5 --max-title-length 16` (the package's own cheap fine-tuning: the embeddings and first 5 BERT
layers frozen, their states computed once per run, as `train_mtrec.py --freeze_encoder_layers 5
--cache_frozen_states` does) with 60 steps of 16 clicks (960 clicks, 36% of an epoch of the 600-user corpus), ~2
minutes a run with its evaluation. BERT's trainable top layer gets lr 1e-4, the main job's default (`train_mtrec.py`),
rather than 2e-5: the paper's rate is for epochs of full fine-tuning, not 60 steps; the user encoder and heads
(category, NER, sentiment, field embeddings and attention) keep 1e-3.
The defaults (full fine-tuning, 30-token titles, lr 2e-5, 40 steps) remain for a machine with more time.

The corpus is written by `benchmarks/make_corpus_samples.py` from the real MIND sample (``--mind-news``, default
``../shared/data/mind_sample/news.tsv``) into a temporary folder outside the repository (the news are licensed) and
deleted at the end: EB-NeRD's Parquet files, with sentiment labels that carry click signal (``--sentiment-weight``,
1.5 by default; 0 gives the control corpus whose labels carry none). It is read through `load_mind` like any EB-NeRD
folder (train -> validation).

Variants (all through the library: `MTRecModel.from_pretrained_encoder`, `MTRecCollator`, `MTRecTrainer`; the same
seed, data order, negatives and hyperparameters; category and NER tasks on, MTRec's surgery):

    MTRec                       the paper's main model
    + sentiment                 use_sentiment_task=True (λ(g_category + g_ner + g_sentiment) before the surgery)
    + multi-field               use_multi_field=True (title, category, entity vectors pooled by additive attention)
    + multi-field + sentiment   both

Each (seed, variant) trains `--steps` steps and is evaluated on the validation impressions (fast evaluation);
the table reports mean ± std over seeds. The markdown file is rewritten after every run, so a cut run still leaves
its partial table. At small budgets the seed-to-seed spread is as large as the differences: read the std first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import _common  # before torch / transformers: offline set-up, the repository on sys.path
from transformers import set_seed

from modeling_mtrec import MTRecModel, MTRecTrainer, MTRecTrainingArguments
from modeling_mtrec.models.mtrec.collator import MTRecCollator
from modeling_mtrec.models.mtrec.configuration_mtrec import encoder_hub_id
from modeling_mtrec.models.mtrec.corpus import load_mind
from modeling_mtrec.training.frozen_states import FrozenStateCache, FrozenStateCollator
from modeling_mtrec.training.recipes import reuse_freed_memory

METRICS = ("auc", "mrr", "ndcg@5", "ndcg@10")
# name -> (use_sentiment_task, use_multi_field)
VARIANTS: dict[str, tuple[bool, bool]] = {
    "MTRec": (False, False),
    "+ sentiment": (True, False),
    "+ multi-field": (False, True),
    "+ multi-field + sentiment": (True, True),
}


def make_corpus(args, work_dir: str) -> str:
    """The EB-NeRD-shaped corpus under `work_dir` (make_corpus_samples.py); returns its ``ebnerd`` folder."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "make_corpus_samples.py")
    subprocess.run(
        [sys.executable, script, "--mind-news", args.mind_news, "--output", work_dir, "--users", str(args.users),
         "--sentiment-weight", str(args.sentiment_weight), "--seed", "0"],
        check=True, env={**os.environ, "PYTHONPATH": str(_common.REPO_ROOT)},
    )  # fmt: skip
    return os.path.join(work_dir, "ebnerd")


def run_variant(spec, corpus, tokenizer, encoder, args, seed, work_dir) -> dict[str, float]:
    use_sentiment, multi_field = spec
    set_seed(seed)
    model = MTRecModel.from_pretrained_encoder(
        encoder,
        id2category={i: c for c, i in corpus.category2id.items()},
        id2sentiment={i: s for s, i in corpus.sentiment2id.items()} if use_sentiment else None,
        use_sentiment_task=use_sentiment,
        use_multi_field=multi_field,
        freeze_encoder_layers=args.freeze_layers,
    )
    collator = MTRecCollator(
        corpus.news, num_negatives=4, pad_token_id=tokenizer.pad_token_id, seed=seed,
        entity_buckets=model.config.num_entity_buckets if multi_field else None,
    )
    if args.freeze_layers:  # as fine_tune_cost.py's build_trainer (and train_mtrec.py --cache_frozen_states)
        collator = FrozenStateCollator(collator, FrozenStateCache.from_model(model, corpus.news))
    training_args = MTRecTrainingArguments(
        output_dir=os.path.join(work_dir, "out"), aux_weight=args.aux_weight, per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64, max_steps=args.steps, learning_rate=args.lr, head_learning_rate=args.head_lr,
        warmup_steps=max(1, args.steps // 10), weight_decay=0.0, logging_steps=args.steps, save_strategy="no",
        eval_strategy="no", report_to=[], use_cpu=True, seed=seed, data_seed=seed, dataloader_num_workers=0,
        disable_tqdm=True,
    )  # fmt: skip
    trainer = MTRecTrainer(model=model, args=training_args, train_dataset=corpus.train, eval_dataset=corpus.eval,
                           data_collator=collator, processing_class=tokenizer)
    start = time.perf_counter()
    trainer.train()
    trained = time.perf_counter()
    metrics = trainer.evaluate()
    result = {"seed": seed, **{m: metrics[f"eval_{m}"] for m in METRICS}}
    result["seconds"] = time.perf_counter() - start
    print(f"seed {seed} {spec}: train {trained - start:.0f} s, evaluation {time.perf_counter() - trained:.0f} s, "
          f"AUC {result['auc']:.4f}", file=sys.stderr, flush=True)
    return result


def mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def render(results: dict[str, list[dict]], args, corpus_line: str, elapsed: float) -> str:
    seeds = sorted({r["seed"] for runs in results.values() for r in runs})
    lines = [
        "# MTRec on an EB-NeRD-shaped corpus: multi-field and sentiment task (validation metrics)",
        "",
        f"Command: `{args.command}`",
        "",
        f"Corpus: {corpus_line}",
        "",
        f"Settings: encoder {encoder_hub_id(args.encoder_path) or args.encoder_path}, {args.steps} steps of "
        f"{args.batch_size} clicks, lr {args.lr} (head {args.head_lr}), λ = {args.aux_weight}, MTRec surgery, "
        + (f"embeddings and the first {args.freeze_layers} BERT layers frozen (their states computed once per run). "
           if args.freeze_layers else "full fine-tuning. ")
        + _common.machine_facts() + ".",
        "",
        f"Wall time: {elapsed / 60:.1f} min. Mean ± std (sample std) over seed(s) {', '.join(map(str, seeds))}.",
        "",
        "| variant | AUC | MRR | nDCG@5 | nDCG@10 | runs | s/run |",
        "|---|---|---|---|---|---:|---:|",
    ]
    for name, runs in results.items():
        if runs:
            lines.append(
                f"| {name} | " + " | ".join(mean_std([r[m] for r in runs]) for m in METRICS)
                + f" | {len(runs)} | {statistics.mean(r['seconds'] for r in runs):.0f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--users", type=int, default=600, help="users of the generated corpus")
    parser.add_argument("--sentiment-weight", type=float, default=1.5, help="0: labels without click signal")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--head-lr", type=float, default=1e-3)
    parser.add_argument("--aux-weight", type=float, default=0.3)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--max-title-length", type=int, default=30)
    parser.add_argument(
        "--freeze-layers", type=int, default=0,
        help="freeze the embeddings and the first k BERT layers, their states computed once (0: full fine-tuning)",
    )
    args = _common.parse_arguments(parser, "corpora.md", encoder=True)
    reuse_freed_memory()  # as the recipes do: the same arithmetic, without a page fault per freed large tensor
    if not os.path.isfile(args.mind_news):
        raise SystemExit(f"{args.mind_news}: the MIND news sample is needed to write the corpus")
    args.encoder_path, tokenizer = _common.load_tokenizer(args.encoder)
    start = time.perf_counter()
    work_dir = tempfile.mkdtemp(prefix="mtrec-corpora-")
    try:
        root = make_corpus(args, os.path.join(work_dir, "samples"))
        corpus = load_mind(tokenizer, train_dir=os.path.join(root, "train"), eval_dir=os.path.join(root, "validation"),
                           max_title_length=args.max_title_length, cache_dir=os.path.join(work_dir, "cache"))
        corpus_line = (
            f"EB-NeRD-shaped, from {len(corpus.news)} MIND-sample news and {args.users} simulated users "
            f"(sentiment weight {args.sentiment_weight}): {len(corpus.train)} train clicks, {len(corpus.eval)} "
            f"validation impressions; auxiliary tasks {corpus.labels}; sentiments {corpus.sentiment2id}."
        )
        results: dict[str, list[dict]] = {name: [] for name in args.variants}
        for seed in args.seeds:
            for name in args.variants:
                results[name].append(
                    run_variant(VARIANTS[name], corpus, tokenizer, args.encoder_path, args, seed, work_dir)
                )
                _common.write_result(args.output, render(results, args, corpus_line, time.perf_counter() - start))
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
