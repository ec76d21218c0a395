"""MTRec quality to convergence on a GPU: does the surgery, do the auxiliary tasks help at a scale CPU never reached?

Exact command of benchmarks/results/gpu_quality.md (from the repository root, on a machine with a CUDA GPU):

    PYTHONPATH=. python benchmarks/gpu_quality.py --out benchmarks/results/gpu_quality.md

Corpus: the semi-synthetic MIND-sample corpus (real MIND-sample titles, categories and title entities;
`simulate_mind_behaviors` users with category and entity preferences) at about 20k train impressions and 1,000
dev impressions. Encoder: all-MiniLM-L6-v2. Training: `MTRecTrainer`, bf16, batch 32, K = 4, AdamW lr 2e-5 with
10% warm-up and linear decay, 2 epochs, then `trainer.evaluate()` (AUC, MRR, nDCG@5/10 over whole dev impressions).

Variants (`--variants`): ``main only`` (no auxiliary head), ``+ both (none)`` (plain sum), ``+ both (mtrec)``,
``+ both (pcgrad)``, and the cheaper fine-tuning with the `mtrec` surgery: ``+ both (mtrec) + frozen 4/6 cached
states`` (`freeze_encoder_layers=4`, `training.frozen_states`) and ``+ both (mtrec) + LoRA r 8`` (`training.lora`, on
query/value, adapters at `--lora-learning-rate`, user encoder and heads at `--learning-rate`); each for every seed
(`--seeds`). Beside them, on the same dev impressions: the untrained
model (seed's initialisation) and a non-neural baseline, score = share of the user's history in the candidate's
category. Each finished run is appended to a JSON file next to `--out`, so a cut-off run keeps what it did.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import _common  # before torch / transformers: offline set-up, the repository on sys.path
import torch
from transformers import AutoTokenizer, set_seed

from modeling_mtrec import MTRecModel, MTRecTrainer, MTRecTrainingArguments
from modeling_mtrec.data.synthetic import simulate_mind_behaviors
from modeling_mtrec.default_encoder import default_encoder_path
from modeling_mtrec.evaluation.metrics import impression_metrics
from modeling_mtrec.models.mtrec.collator import MTRecCollator
from modeling_mtrec.models.mtrec.corpus import load_mind
from modeling_mtrec.training.frozen_states import FrozenStateCache, FrozenStateCollator
from modeling_mtrec.training.lora import apply_lora

DEFAULT_MIND_NEWS = str(_common.MIND_SAMPLE)
# variant -> gradient_surgery, auxiliary tasks on, frozen lower layers (with cached states), LoRA rank
VARIANTS = {
    "main only": {"surgery": "none", "aux": False},
    "+ both (none)": {"surgery": "none", "aux": True},
    "+ both (mtrec)": {"surgery": "mtrec", "aux": True},
    "+ both (pcgrad)": {"surgery": "pcgrad", "aux": True},
    "+ both (mtrec) + frozen 4/6 cached states": {"surgery": "mtrec", "aux": True, "freeze": 4},
    "+ both (mtrec) + LoRA r 8": {"surgery": "mtrec", "aux": True, "lora": 8},
}
METRICS = ("auc", "mrr", "ndcg@5", "ndcg@10")


def category_share_baseline(corpus) -> dict[str, float]:
    """Score of a candidate = share of the user's history in the candidate's category (0 for an empty history)."""
    category = corpus.news.with_format(None)["category_label"]
    rows = corpus.eval.with_format(None)[:]
    scores = []
    for history, candidates in zip(rows["history"], rows["candidates"], strict=True):
        counts: dict[int, int] = {}
        for row in history:
            counts[category[row]] = counts.get(category[row], 0) + 1
        scores.append([counts.get(category[c], 0) / max(len(history), 1) for c in candidates])
    return impression_metrics(rows["labels"], scores)


def run(corpus, tokenizer, variant: str, seed: int, args, work_dir: str) -> dict:
    spec = VARIANTS[variant]
    set_seed(seed)
    model = MTRecModel.from_pretrained_encoder(
        default_encoder_path(), id2category={i: c for c, i in corpus.category2id.items()},
        use_category_task=spec["aux"], use_ner_task=spec["aux"], freeze_encoder_layers=spec.get("freeze", 0),
    )
    collator = MTRecCollator(corpus.news, num_negatives=4, pad_token_id=tokenizer.pad_token_id, seed=seed)
    if spec.get("freeze"):  # the frozen layers' states of every news, computed once (on the CPU, before training)
        collator = FrozenStateCollator(collator, FrozenStateCache.from_model(model, corpus.news))
    if spec.get("lora"):
        model = apply_lora(model, r=spec["lora"], alpha=2 * spec["lora"], dropout=0.1)
    training_args = MTRecTrainingArguments(
        output_dir=os.path.join(work_dir, f"{variant}-{seed}"), gradient_surgery=spec["surgery"], aux_weight=0.3,
        bf16=True, per_device_train_batch_size=32, per_device_eval_batch_size=512,
        learning_rate=args.lora_learning_rate if spec.get("lora") else args.learning_rate,
        head_learning_rate=args.learning_rate, warmup_steps=0.1, lr_scheduler_type="linear",
        num_train_epochs=args.epochs, logging_steps=50,
        save_strategy="no", eval_strategy="no", report_to=[], seed=seed, dataloader_num_workers=4,
    )
    trainer = MTRecTrainer(
        model=model, args=training_args, train_dataset=corpus.train, eval_dataset=corpus.eval,
        data_collator=collator,
    )
    untrained = trainer.evaluate(metric_key_prefix="untrained")
    start = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - start
    trained = trainer.evaluate()
    logs = [e for e in trainer.state.log_history if "conflict_rate" in e]
    return {
        "variant": variant,
        "seed": seed,
        "untrained": {k: untrained[f"untrained_{k}"] for k in METRICS},
        "trained": {k: trained[f"eval_{k}"] for k in METRICS},
        "train_seconds": seconds,
        "train_samples_per_second": result.metrics["train_samples_per_second"],
        "steps": trainer.state.global_step,
        "conflict_rate": statistics.mean(e["conflict_rate"] for e in logs) if logs else None,
    }


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def write_table(results: list[dict], baseline: dict, corpus_facts: str, out: str, command: str) -> str:
    lines = [
        "# MTRec quality to convergence on a GPU (semi-synthetic MIND sample, all-MiniLM-L6-v2, bf16)",
        "",
        f"Command: `{command}`",
        "",
        corpus_facts,
        "",
        "Dev metrics after training, mean ± std over seeds (n = number of seeds):",
        "",
        "| variant | n | AUC | MRR | nDCG@5 | nDCG@10 | train time (s) | samples/s | conflict rate |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    untrained = [r["untrained"] for r in results]
    if untrained:
        lines.append(
            f"| untrained | {len(untrained)} | "
            + " | ".join(mean_std([u[k] for u in untrained]) for k in METRICS)
            + " | | | |"
        )
    lines.append("| category-share baseline (non-neural) | 1 | " + " | ".join(f"{baseline[k]:.4f}" for k in METRICS)
                 + " | | | |")
    for variant in VARIANTS:
        runs = [r for r in results if r["variant"] == variant]
        if not runs:
            continue
        conflict = [r["conflict_rate"] for r in runs if r["conflict_rate"] is not None]
        lines.append(
            f"| {variant} | {len(runs)} | "
            + " | ".join(mean_std([r["trained"][k] for r in runs]) for k in METRICS)
            + f" | {statistics.mean(r['train_seconds'] for r in runs):.0f} | "
            f"{statistics.mean(r['train_samples_per_second'] for r in runs):.0f} | "
            + (f"{statistics.mean(conflict):.2f}" if conflict else "")
            + " |"
        )
    text = "\n".join(lines) + "\n"
    if out:
        with open(out, "w") as f:
            f.write(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mind-news", default=DEFAULT_MIND_NEWS)
    parser.add_argument("--num-users", type=int, default=6700, help="simulated train users (x ~3 impressions)")
    parser.add_argument("--num-dev-users", type=int, default=1000)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument("--lora-learning-rate", type=float, default=1e-3,
                        help="of the LoRA adapters (fine_tune_cost.py's)")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_quality.py needs a CUDA GPU")

    tokenizer = AutoTokenizer.from_pretrained(default_encoder_path())
    work_dir = tempfile.mkdtemp()
    folders = simulate_mind_behaviors(
        args.mind_news, os.path.join(work_dir, "corpus"), seed=0, num_users=args.num_users,
        num_dev_users=args.num_dev_users, history_length=(10, 50),
    )
    corpus = load_mind(tokenizer, train_dir=folders["train"], eval_dir=folders["dev"])
    impressions = sum(1 for _ in open(os.path.join(folders["train"], "behaviors.tsv")))
    facts = (
        f"Corpus: {impressions:,} train impressions -> {len(corpus.train):,} training samples (clicks), "
        f"{len(corpus.eval):,} dev impressions, {len(corpus.news):,} news; histories of 10-50 clicks. "
        f"{args.epochs:g} epochs, batch 32, lr {args.learning_rate:g}, seeds {args.seeds}."
    )
    baseline = category_share_baseline(corpus)
    print(facts, "baseline", baseline, flush=True)
    log_path = (args.out or os.path.join(work_dir, "gpu_quality.md")).removesuffix(".md") + ".json"
    results: list[dict] = json.load(open(log_path)) if os.path.exists(log_path) else []
    command = "PYTHONPATH=. python benchmarks/gpu_quality.py " + " ".join(sys.argv[1:])
    for seed in (int(s) for s in args.seeds.split(",")):
        for variant in args.variants.split(","):
            if any(r["variant"] == variant and r["seed"] == seed for r in results):
                continue
            result = run(corpus, tokenizer, variant, seed, args, work_dir)
            print(json.dumps(result), flush=True)
            results.append(result)
            with open(log_path, "w") as f:
                json.dump(results, f, indent=1)
            print(write_table(results, baseline, facts, args.out, command), flush=True)


if __name__ == "__main__":
    main()
