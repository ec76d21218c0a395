"""Ablation of MTRec's auxiliary tasks and gradient surgery: dev AUC / MRR / nDCG@5 / nDCG@10.

Exact command of benchmarks/results/ablation.md (from the repository root; writes the file and prints it):

    PYTHONPATH=. python benchmarks/ablation.py --steps 30 --seeds 0 1 --threads 1 --budget-minutes 15

(cut from the defaults, 60 steps, to fit ~25 minutes on a 2-core machine shared with another job; the
budget stops starting new (seed, corpus) blocks after 15 minutes, and the table says which seeds ran).

Variants (all through the library: `MTRecModel.from_pretrained_encoder`, `load_mind`, `MTRecCollator`,
`MTRecTrainer`), with the same seed, data order, negatives and hyperparameters:

    main only              use_category_task=False, use_ner_task=False
    + category             use_ner_task=False
    + NER                  use_category_task=False
    + both, no surgery     gradient_surgery="none"   (plain L_main + λ(L_cat + L_ner))
    + both, MTRec surgery  gradient_surgery="mtrec"
    + both, PCGrad         gradient_surgery="pcgrad"

`--variants` picks a subset by name (the untrained reference row always runs).

plus the untrained model (aux heads on, no step) as a reference row. Corpora: the package's synthetic corpus,
and the semi-synthetic MIND-sample corpus (`simulate_mind_behaviors` over the real 2,000-news sample, written to
a temporary folder; skipped with a note when the file is absent). Every (seed, corpus) pair runs all variants;
the table reports mean ± std over seeds. The markdown file is rewritten after every run, so a cut run still
leaves its partial table. Differences between variants are small next to the seed-to-seed spread at this
budget: read the std before reading a ranking.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import tempfile
import time

import _common  # before torch / transformers: offline set-up, the repository on sys.path
import torch
import transformers
from transformers import BertConfig, BertModel, set_seed

from modeling_mtrec import MTRecModel, MTRecTrainer, MTRecTrainingArguments
from modeling_mtrec.data import generate_synthetic_mind, simulate_mind_behaviors
from modeling_mtrec.models.mtrec.collator import MTRecCollator
from modeling_mtrec.models.mtrec.corpus import load_mind

METRICS = ("auc", "mrr", "ndcg@5", "ndcg@10")
# name -> (use_category_task, use_ner_task, gradient_surgery); None = untrained reference
VARIANTS: dict[str, tuple[bool, bool, str] | None] = {
    "untrained (reference)": None,
    "main only": (False, False, "none"),
    "+ category": (True, False, "none"),
    "+ NER": (False, True, "none"),
    "+ both, no surgery (`none`)": (True, True, "none"),
    "+ both, MTRec surgery (`mtrec`)": (True, True, "mtrec"),
    "+ both, PCGrad (`pcgrad`)": (True, True, "pcgrad"),
}


def run_variant(name, spec, corpus, tokenizer, encoder, layers, args, seed, work_dir) -> dict[str, float]:
    use_category, use_ner, mode = spec if spec is not None else (True, True, "none")
    set_seed(seed)
    model = MTRecModel.from_pretrained_encoder(
        encoder,
        encoder_kwargs={"num_hidden_layers": layers} if layers else None,
        id2category={i: c for c, i in corpus.category2id.items()},
        use_category_task=use_category,
        use_ner_task=use_ner,
    )
    collator = MTRecCollator(corpus.news, num_negatives=4, pad_token_id=tokenizer.pad_token_id, seed=seed)
    training_args = MTRecTrainingArguments(
        output_dir=os.path.join(work_dir, "out"),
        gradient_surgery=mode,
        aux_weight=args.aux_weight,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=32,
        max_steps=args.steps,
        learning_rate=args.lr,
        warmup_steps=max(1, args.steps // 10),
        weight_decay=0.0,
        logging_steps=args.steps,  # one log at the end: averages over the whole run
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=seed,
        data_seed=seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = MTRecTrainer(
        model=model,
        args=training_args,
        train_dataset=corpus.train,
        eval_dataset=corpus.eval,
        data_collator=collator,
        processing_class=tokenizer,
    )
    result: dict[str, float] = {"seed": seed}
    start = time.perf_counter()
    if spec is not None:
        trainer.train()
        logs = next((e for e in reversed(trainer.state.log_history) if "main_loss" in e), {})
        for key in ("main_loss", "grad_cosine", "conflict_rate"):
            if key in logs:
                result[key] = logs[key]
    metrics = trainer.evaluate()
    result.update({m: metrics[f"eval_{m}"] for m in METRICS})
    result["seconds"] = time.perf_counter() - start
    return result


def mean_std(values: list[float], digits: int = 4) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def render(results, corpora_notes, args, command, settings, elapsed) -> str:
    lines = [
        "# Ablation: auxiliary tasks and gradient surgery (dev metrics)",
        "",
        f"Command: `{command}`",
        "",
        f"Settings: {settings}",
        "",
        f"Wall time so far: {elapsed / 60:.1f} min.",
        "",
    ]
    for corpus_name, per_variant in results.items():
        seeds_done = max((len(v) for v in per_variant.values()), default=0)
        lines += [
            f"## {corpus_name}",
            "",
            corpora_notes.get(corpus_name, ""),
            "",
            f"Mean ± std (sample std) over {seeds_done} seed(s): "
            + ", ".join(str(s) for s in sorted({r["seed"] for runs in per_variant.values() for r in runs}))
            + ". `conflict` = share of steps with g_aux · g_main < 0, `cos` = mean cosine(g_main, g_aux) over "
            "the run (recorded by the surgery modes only).",
            "",
            "| variant | AUC | MRR | nDCG@5 | nDCG@10 | final main loss | cos | conflict | s/run |",
            "|---|---|---|---|---|---|---|---|---:|",
        ]
        for variant, runs in per_variant.items():
            if not runs:
                continue
            cells = [mean_std([r[m] for r in runs]) for m in METRICS]
            cells.append(mean_std([r["main_loss"] for r in runs if "main_loss" in r], 3))
            cells.append(mean_std([r["grad_cosine"] for r in runs if "grad_cosine" in r], 3))
            cells.append(mean_std([r["conflict_rate"] for r in runs if "conflict_rate" in r], 2))
            cells.append(f"{statistics.mean(r['seconds'] for r in runs):.0f}")
            lines.append(f"| {variant} | " + " | ".join(cells) + " |")
        lines.append("")
    for corpus_name, note in corpora_notes.items():
        if corpus_name not in results:
            lines += [f"## {corpus_name}", "", note, ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=2, help="keep the first N encoder layers (0 = all)")
    parser.add_argument(
        "--from-scratch", action="store_true",
        help="a randomly initialised tiny BERT (hidden 64, 2 layers, no dropout) with MiniLM's tokenizer, "
        "instead of pretrained weights: small enough to train for hundreds of steps here",
    )
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    parser.add_argument(
        "--add-to",
        nargs="*",
        default=[],
        help="raw-results JSON files of earlier runs (same settings) to merge into the table; "
        "with --seeds and nothing else, only re-renders",
    )
    parser.add_argument(
        "--variants", nargs="+", default=None, metavar="NAME",
        help="run only the variants whose name contains one of these strings (e.g. '`none`' '`mtrec`')",
    )
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per variant")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--aux-weight", type=float, default=0.3, help="λ")
    parser.add_argument("--corpora", nargs="+", default=["synthetic", "mind-sample"])
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the corpora (fixed across runs)")
    parser.add_argument(
        "--budget-minutes",
        type=float,
        default=None,
        help="stop starting new (seed, corpus) blocks once this much wall time has passed",
    )
    args = _common.parse_arguments(parser, "ablation.md", encoder=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    command = args.command
    encoder, tokenizer = _common.load_tokenizer(args.encoder)
    layers = args.layers or None
    work_dir = tempfile.mkdtemp(prefix="mtrec-ablation-")
    if args.from_scratch:
        encoder, layers = os.path.join(work_dir, "tiny-bert"), None
        torch.manual_seed(0)
        tiny = BertConfig(
            vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=128, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        )
        BertModel(tiny, add_pooling_layer=False).save_pretrained(encoder)
        tokenizer.save_pretrained(encoder)
    encoder_text = (
        "a from-scratch tiny BERT (hidden 64, 2 layers, 4 heads, no dropout, MiniLM's tokenizer)"
        if args.from_scratch
        else f"all-MiniLM-L6-v2{f' cut to its first {layers} layers' if layers else ''} (real weights)"
    )
    settings = (
        f"encoder {encoder_text}, "
        f"max title 30 tokens, max history 50, K = 4 negatives, λ = {args.aux_weight}, batch {args.batch_size}, "
        f"{args.steps} optimizer steps per variant (AdamW, lr {args.lr}, linear decay, {max(1, args.steps // 10)} "
        "warm-up steps, no weight decay), same seed for model init / data order / negatives within a seed; "
        f"corpora generated with seed {args.data_seed}; eval on all dev impressions. torch {torch.__version__}, "
        f"transformers {transformers.__version__}, {os.cpu_count()} CPU cores, {torch.get_num_threads()} torch "
        f"threads, {platform.machine()}."
    )

    corpora, notes = {}, {}
    if "synthetic" in args.corpora:
        folders = generate_synthetic_mind(os.path.join(work_dir, "synthetic"), seed=args.data_seed)
        corpora["synthetic corpus"] = load_mind(
            tokenizer, train_dir=folders["train"], eval_dir=folders["dev"]
        )
        notes["synthetic corpus"] = (
            f"`generate_synthetic_mind(seed={args.data_seed})` defaults: {len(corpora['synthetic corpus'].train)} "
            f"train samples, {len(corpora['synthetic corpus'].eval)} dev impressions."
        )
    if "mind-sample" in args.corpora:
        name = "semi-synthetic MIND-sample corpus"
        if os.path.isfile(args.mind_news):
            folders = simulate_mind_behaviors(
                args.mind_news, os.path.join(work_dir, "mind"), seed=args.data_seed
            )
            corpora[name] = load_mind(tokenizer, train_dir=folders["train"], eval_dir=folders["dev"])
            notes[name] = (
                f"Real titles/categories/entities of the 2,000-news MIND sample, simulated users "
                f"(`simulate_mind_behaviors(seed={args.data_seed})` defaults): {len(corpora[name].train)} train "
                f"samples, {len(corpora[name].eval)} dev impressions, {len(corpora[name].category2id)} categories. "
                "Only aggregate metrics are reported."
            )
        else:
            notes[name] = f"Skipped: {args.mind_news} not found."

    epoch_note = ", ".join(
        f"{n}: {args.steps * args.batch_size / len(c.train):.2f} epoch" for n, c in corpora.items()
    )
    settings += f" Training covers {epoch_note}."
    chosen = {
        name: spec
        for name, spec in VARIANTS.items()
        if spec is None or args.variants is None or any(pattern in name for pattern in args.variants)
    }
    results = {n: {v: [] for v in chosen} for n in corpora}
    for path in args.add_to:
        with open(path) as f:
            for corpus_name, per_variant in json.load(f).items():
                for variant, runs in per_variant.items():
                    results.setdefault(corpus_name, {v: [] for v in chosen}).setdefault(variant, []).extend(runs)
    raw_path = os.path.splitext(args.output)[0] + ".json"
    start = time.perf_counter()
    stopped = None
    for seed in args.seeds:
        for corpus_name, corpus in corpora.items():
            elapsed = time.perf_counter() - start
            if args.budget_minutes is not None and elapsed > args.budget_minutes * 60:
                stopped = f"stopped before seed {seed} / {corpus_name}: wall-time budget of {args.budget_minutes} min"
                break
            for variant, spec in chosen.items():
                result = run_variant(
                    variant,
                    spec,
                    corpus,
                    tokenizer,
                    encoder,
                    layers,
                    args,
                    seed,
                    os.path.join(work_dir, "run"),
                )
                results[corpus_name][variant].append(result)
                print(
                    f"seed {seed} | {corpus_name} | {variant} | "
                    + " ".join(f"{k}={v:.4f}" for k, v in result.items() if not math.isnan(v)),
                    flush=True,
                )
                text = render(results, notes, args, command, settings, time.perf_counter() - start)
                with open(args.output, "w") as f:
                    f.write(text)
                with open(raw_path, "w") as f:
                    json.dump(results, f, indent=1)
        if stopped:
            break
    text = render(results, notes, args, command, settings, time.perf_counter() - start)
    if stopped:
        text += f"\nNote: {stopped}; the table holds the seeds completed before.\n"
    _common.write_result(args.output, text)


if __name__ == "__main__":
    main()
