"""Foundation model (Gong et al., CIKM 2023) on the embedded multi-domain corpus: the paper's comparisons, 3 seeds.

    PYTHONPATH=. python benchmarks/foundation.py --seeds 0 1 2 --threads 1

For each seed s: the embedded corpus with corpus seed s built from the news of `--mind-news` (by default the MIND
sample beside the repository, `_common.MIND_SAMPLE`: real titles; the package's synthetic news when that file is
absent; simulated users and labels),
then, with training seed s, every variant below trained with `FoundationTrainer` (AdamW, constant lr, no weight
decay) and evaluated on the test rows:

* source domains (pretraining): single-domain models (one per domain), shared-bottom, MMoE, MMoE + DA,
  MMoE + DA + JS (the reference: domain gating, pretrained LM, interaction features), MMoE + DA + MMD,
  PLE + DA + JS; gating mean / [CLS] / domain (+ the learned item aspect weights per domain); text none / randomly
  initialised LM / pretrained LM; the paper's plain concatenation x (no interaction features); the reference with
  gradient surgery between the CTR and relevance gradients (`mtrec`: CTR main; `pcgrad`: symmetric);
* target domain (cold start): a model trained on the target rows alone vs the reference model fine-tuned with each
  freeze split (none, L0, L0+L1), at two target training sizes, plus the reference model before fine-tuning.

Writes `benchmarks/results/foundation.md` (mean ± std over seeds; paired per-seed deltas against the paper's
reported deltas) and `foundation.json` (every run). The text vectors are encoded once per LM (cached) and the
one-off encoding cost is reported. Nothing of the news file is written anywhere but a temporary folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import BertConfig, BertModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MIND_SAMPLE, machine_facts  # noqa: E402

from modeling_mtrec import FoundationConfig, FoundationModel  # noqa: E402
from modeling_mtrec.default_encoder import default_encoder_path  # noqa: E402
from modeling_mtrec.evaluation.foundation import evaluate_foundation  # noqa: E402
from modeling_mtrec.models.foundation.corpus import DEFAULT, build_foundation_corpus  # noqa: E402
from modeling_mtrec.models.foundation.data import (  # noqa: E402
    FoundationCollator,
    build_features,
    item_text_table,
    read_impressions,
    suggest_buckets,
)
from modeling_mtrec.training.foundation import (  # noqa: E402
    FoundationDataset,
    FoundationTrainer,
    FoundationTrainingArguments,
)
from modeling_mtrec.vectors import TextFeatureCache  # noqa: E402

REFERENCE = dict(mtl_module="mmoe", use_domain_adaptive=True, regularizer="js", gating="domain", interaction_features=True)
SOURCE_VARIANTS = {  # name -> config overrides of the reference ("text" picks the text features)
    "shared-bottom": dict(mtl_module="shared_bottom", use_domain_adaptive=False, regularizer="none"),
    "MMoE": dict(use_domain_adaptive=False, regularizer="none"),
    "MMoE + DA": dict(regularizer="none"),
    "MMoE + DA + JS (reference)": {},
    "MMoE + DA + MMD": dict(regularizer="mmd"),
    "PLE + DA + JS": dict(mtl_module="ple"),
    "gating: mean": dict(gating="mean"),
    "gating: [CLS]": dict(gating="cls"),
    "text: none": dict(text="none"),
    "text: random LM": dict(text="random"),
    "x = concatenation only (paper)": dict(interaction_features=False),
    "reference + surgery mtrec (CTR main)": dict(surgery="mtrec"),
    "reference + surgery pcgrad": dict(surgery="pcgrad"),
}
SPLITS = ("none", "L0", "L0+L1")
# (row of ours, reference row, paper's reported AUC delta, what the paper compares)
PAPER_DELTAS = [
    ("gating: domain vs mean", "MMoE + DA + JS (reference)", "gating: mean", 0.0139, "domain gating over mean gating"),
    ("MMoE + DA + JS vs MMoE", "MMoE + DA + JS (reference)", "MMoE", 0.013, "MMoE-DA-JS: +0.013 to +0.040 AUC on four tasks"),
    ("MMoE + DA + JS vs shared-bottom", "MMoE + DA + JS (reference)", "shared-bottom", 0.013, "(same range, against the baselines)"),
]
# Ours only (no paper figure): the package's gradient surgery between the two tasks.
OWN_DELTAS = [
    ("surgery mtrec vs none", "reference + surgery mtrec (CTR main)", "MMoE + DA + JS (reference)"),
    ("surgery pcgrad vs none", "reference + surgery pcgrad", "MMoE + DA + JS (reference)"),
]


def train(model, features, args: FoundationTrainingArguments, epochs: float, lr: float) -> float:
    """Train in place; returns training rows/s."""
    run_args = dataclasses.replace(args, num_train_epochs=epochs, learning_rate=lr)
    trainer = FoundationTrainer(model=model, args=run_args, train_dataset=FoundationDataset(features))
    start = time.perf_counter()
    trainer.train()
    return len(features) * epochs / (time.perf_counter() - start)


@torch.no_grad()
def aspect_weights(model, features, domains) -> dict[str, list[float]]:
    """Mean item aspect weights (id, text, sparse) over the rows of each domain."""
    out = model.eval()(**FoundationCollator(features)(list(range(len(features)))))
    names = np.asarray(features.domain_names)
    return {d: out.item_aspect_weights[torch.as_tensor(names == d)].mean(0).tolist() for d in domains}


def summary(report: dict) -> dict:
    keys = ("mean_auc", "mean_ctr_auc", "mean_relevance_auc", "mean_ctr_gauc")
    return {k: float(report[k]) for k in keys}


def random_lm(folder: Path) -> str:
    """all-MiniLM-L6-v2's shape and tokenizer with random weights (seed 0): what pretraining of the LM buys."""
    if not folder.is_dir():
        transformers.set_seed(0)
        BertModel(BertConfig.from_pretrained(default_encoder_path()), add_pooling_layer=False).save_pretrained(folder)
        transformers.AutoTokenizer.from_pretrained(default_encoder_path()).save_pretrained(folder)
    return str(folder)


def run_seed(seed: int, work: Path, caches: dict, opts) -> dict:
    corpus = build_foundation_corpus(work / f"corpus-{seed}", news_tsv=opts.news_tsv, seed=seed, sizes=DEFAULT)
    rows = {n: read_impressions(corpus[n]) for n in ("source_train", "source_test", "target_train", "target_test")}
    item_texts = item_text_table(*rows.values())
    buckets = suggest_buckets(*rows.values())
    sources = list(dict.fromkeys(rows["source_train"]["domain"]))
    args = FoundationTrainingArguments(
        output_dir=str(work / "trainer"), per_device_train_batch_size=256, report_to="none", save_strategy="no",
        disable_tqdm=True, use_cpu=True, seed=seed, lr_scheduler_type="constant", weight_decay=0.0, logging_steps=10_000,
    )
    results: dict = {"seed": seed, "oracle": json.load(open(corpus["info"]))["oracle_test_ctr_auc"], "source": {}, "target": {}}
    encode: dict = {}

    def features(split, config, text):
        cache = caches.get(text)
        before = (cache.encoded, cache.encode_seconds) if cache else (0, 0.0)
        out = build_features(rows[split], config, text_cache=cache, item_texts=item_texts, max_history_length=20)
        if cache and cache.encoded > before[0]:
            encode.setdefault(text, [0, 0.0])
            encode[text][0] += cache.encoded - before[0]
            encode[text][1] += cache.encode_seconds - before[1]
        return out

    def config_for(domains, text="pretrained", **overrides):
        return FoundationConfig(
            domains=domains, embedding_dim=32, id_embedding_dim=32, **buckets, sparse_hidden_sizes=[32],
            text_embed_dim=384 if text != "none" else 0, aspects=["id", "text", "sparse"] if text != "none" else ["id", "sparse"],
            expert_hidden_sizes=[64, 32], domain_adaptive_dim=64, tower_hidden_sizes=[16], num_experts=4,
            **{**REFERENCE, **overrides},
        )

    reference_model = None
    for name, overrides in SOURCE_VARIANTS.items():
        overrides = dict(overrides)
        text = overrides.pop("text", "pretrained")
        surgery = overrides.pop("surgery", "none")
        torch.manual_seed(seed)
        config = config_for(sources, text, **overrides)
        model = FoundationModel(config)
        start = time.perf_counter()
        speed = train(model, features("source_train", config, text), dataclasses.replace(args, gradient_surgery=surgery),
                      opts.epochs, opts.lr)
        report = evaluate_foundation(model, features("source_test", config, text))
        entry = {**summary(report), "rows_per_second": speed, "seconds": time.perf_counter() - start,
                 "domains": report["domains"]}
        if name.startswith("gating") or name.endswith("(reference)"):
            entry["item_aspect_weights"] = aspect_weights(model, features("source_test", config, text), sources)
        results["source"][name] = entry
        print(f"seed {seed} {name}: mean AUC {entry['mean_auc']:.4f} ({entry['seconds']:.0f}s)", flush=True)
        if name.endswith("(reference)"):
            reference_model = model

    # Single-domain models: one per source domain, on its own rows, averaged like the others.
    start, speeds, reports = time.perf_counter(), [], []
    for domain in sources:
        torch.manual_seed(seed)
        config = config_for([domain], regularizer="none")
        model = FoundationModel(config)
        # The features of all source domains, then this domain's rows, with domain id 0 (the model's only domain).
        train_rows = features("source_train", config_for(sources), "pretrained")
        train_rows = train_rows.select([i for i, d in enumerate(train_rows.domain_names) if d == domain])
        train_rows.columns["domain_ids"].zero_()
        speeds.append(train(model, train_rows, args, opts.epochs, opts.lr))
        test_rows = features("source_test", config_for(sources), "pretrained")
        test_rows = test_rows.select([i for i, d in enumerate(test_rows.domain_names) if d == domain])
        test_rows.columns["domain_ids"].zero_()
        reports.append(evaluate_foundation(model, test_rows))
    merged = {"domains": {d: r["domains"][d] for d, r in zip(sources, reports)}}
    results["source"]["single-domain models"] = {
        "mean_auc": float(np.nanmean([e[t] for e in merged["domains"].values() for t in ("ctr_auc", "relevance_auc")])),
        "mean_ctr_auc": float(np.nanmean([r["mean_ctr_auc"] for r in reports])),
        "mean_relevance_auc": float(np.nanmean([r["mean_relevance_auc"] for r in reports])),
        "mean_ctr_gauc": float(np.nanmean([r["mean_ctr_gauc"] for r in reports])),
        "rows_per_second": float(np.mean(speeds)), "seconds": time.perf_counter() - start, **merged,
    }
    print(f"seed {seed} single-domain: mean AUC {results['source']['single-domain models']['mean_auc']:.4f}", flush=True)

    # Cold start on the target domain.
    reference_state = {k: v.clone() for k, v in reference_model.state_dict().items()}
    target = "target"
    for size in opts.target_sizes:
        train_rows = rows["target_train"].select(range(size))
        sized = dict(rows)
        sized["target_train"] = train_rows
        torch.manual_seed(seed)
        scratch = FoundationModel(config_for([target], regularizer="none"))
        tr = build_features(train_rows, scratch.config, text_cache=caches["pretrained"], item_texts=item_texts)
        train(scratch, tr, args, opts.target_epochs, opts.lr)
        te = build_features(rows["target_test"], scratch.config, text_cache=caches["pretrained"], item_texts=item_texts)
        results["target"][f"{size}: target domain alone"] = summary(evaluate_foundation(scratch, te))
        for split in SPLITS:
            torch.manual_seed(seed)
            model = FoundationModel(reference_model.config.__class__.from_dict(reference_model.config.to_dict()))
            model.load_state_dict(reference_state)
            model.add_domain(target)
            if split == SPLITS[0] and size == opts.target_sizes[0]:
                te0 = build_features(rows["target_test"], model.config, text_cache=caches["pretrained"], item_texts=item_texts)
                results["target"]["pretrained, before fine-tuning"] = summary(evaluate_foundation(model, te0))
            model.freeze(split)
            tr = build_features(train_rows, model.config, text_cache=caches["pretrained"], item_texts=item_texts)
            train(model, tr, args, opts.target_epochs, opts.target_lr)
            te = build_features(rows["target_test"], model.config, text_cache=caches["pretrained"], item_texts=item_texts)
            results["target"][f"{size}: pretrain + SFT, freeze {split}"] = summary(evaluate_foundation(model, te))
        print(f"seed {seed} target {size}: " + ", ".join(
            f"{k.split(': ', 1)[1]} {v['mean_auc']:.4f}" for k, v in results["target"].items() if k.startswith(f"{size}:")), flush=True)
    results["encoding"] = encode
    return results


def fmt(values: list[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "n/a"
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1) if len(values) > 1 else 0.0:.4f}"


def paired(a: list[float], b: list[float]) -> tuple[float, float]:
    d = np.array(a) - np.array(b)
    return float(d.mean()), float(d.std(ddof=1)) if len(d) > 1 else 0.0


def write_table(all_results: list[dict], opts, encoding: dict, path: Path) -> str:
    seeds = [r["seed"] for r in all_results]
    source_names = ["single-domain models", *SOURCE_VARIANTS]
    lines = [
        "# Foundation model (Gong et al., CIKM 2023) on the embedded multi-domain corpus",
        "",
        f"Command: `PYTHONPATH=. python benchmarks/foundation.py {' '.join(sys.argv[1:])}`",
        "",
        f"Machine: {machine_facts()}.",
        "",
        f"Corpus: `build_foundation_corpus(seed=s)` for seeds {seeds} (news: {opts.news_label}); 3 source domains "
        f"(`text`, `id`, `sparse`) x ({DEFAULT.source_train_rows} train + {DEFAULT.source_test_rows} test rows), "
        f"target domain {DEFAULT.target_train_rows} train rows (the first n used) + {DEFAULT.target_test_rows} test rows "
        f"on cold items; {DEFAULT.num_users} users. Training seed = corpus seed. Pretraining {opts.epochs} epochs, lr "
        f"{opts.lr}, batch 256; target training {opts.target_epochs} epochs (lr {opts.lr} from scratch, "
        f"{opts.target_lr} fine-tuning); d = 32, MMoE 4 experts [64, 32], x̂ width 64, JS weight 0.1 (histogram "
        "estimator), all-MiniLM-L6-v2 text features (frozen, cached). Mean ± std over seeds; AUC = mean over "
        "(domain, task) of the test AUC; CTR GAUC = per-user grouped AUC.",
        "",
        "Oracle CTR AUC (the planted click probabilities on the test rows): "
        + ", ".join(f"{d} {fmt([r['oracle'][d] for r in all_results])}" for d in all_results[0]["oracle"]) + ".",
        "",
        "## Source domains (after pretraining)",
        "",
        "| variant | mean AUC | CTR AUC | relevance AUC | CTR GAUC | training rows/s |",
        "|---|---|---|---|---|---|",
    ]
    for name in source_names:
        runs = [r["source"][name] for r in all_results]
        lines.append(
            f"| {name} | {fmt([x['mean_auc'] for x in runs])} | {fmt([x['mean_ctr_auc'] for x in runs])} | "
            f"{fmt([x['mean_relevance_auc'] for x in runs])} | {fmt([x['mean_ctr_gauc'] for x in runs])} | "
            f"{np.mean([x['rows_per_second'] for x in runs]):.0f} |"
        )
    lines += ["", "Per-domain CTR AUC / relevance AUC:", "",
              "| variant | " + " | ".join(all_results[0]["source"]["MMoE"]["domains"]) + " |",
              "|---|" + "---|" * len(all_results[0]["source"]["MMoE"]["domains"])]
    for name in source_names:
        cells = []
        for domain in all_results[0]["source"]["MMoE"]["domains"]:
            ctr = fmt([r["source"][name]["domains"][domain]["ctr_auc"] for r in all_results])
            rel = fmt([r["source"][name]["domains"][domain]["relevance_auc"] for r in all_results])
            cells.append(f"{ctr} / {rel}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Learned item aspect weights (id, text, sparse), mean over the test rows of each domain and over seeds:", "",
              "| gating | " + " | ".join(all_results[0]["source"]["MMoE"]["domains"]) + " |",
              "|---|" + "---|" * len(all_results[0]["source"]["MMoE"]["domains"])]
    for name in ("MMoE + DA + JS (reference)", "gating: [CLS]", "gating: mean"):
        label = "domain" if name.endswith("(reference)") else name.split(": ")[1]
        cells = []
        for domain in all_results[0]["source"]["MMoE"]["domains"]:
            w = np.mean([r["source"][name]["item_aspect_weights"][domain] for r in all_results], axis=0)
            cells.append(", ".join(f"{x:.2f}" for x in w))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    lines += ["", "## Target domain (cold start)", "", "| model | target train rows | mean AUC | CTR AUC | relevance AUC | CTR GAUC |",
              "|---|---|---|---|---|---|"]
    target_names = list(all_results[0]["target"])
    for name in target_names:
        runs = [r["target"][name] for r in all_results]
        size, label = (name.split(": ", 1) + [""])[:2] if ": " in name else ("0", name)
        lines.append(f"| {label or name} | {size} | {fmt([x['mean_auc'] for x in runs])} | {fmt([x['mean_ctr_auc'] for x in runs])} | "
                     f"{fmt([x['mean_relevance_auc'] for x in runs])} | {fmt([x['mean_ctr_gauc'] for x in runs])} |")

    lines += ["", "## Our deltas beside the paper's", "",
              "Paired per-seed differences of mean AUC (ours: mean ± std over seeds). The paper's numbers are on private "
              "Alipay data, so only the direction is comparable. \">2 std\": |mean| > 2 x the std of the paired differences.",
              "", "| comparison | ours | paper | direction agrees | gap > 2 std |", "|---|---|---|---|---|"]

    def delta_row(label, a_runs, b_runs, paper, note):
        mean, std = paired(a_runs, b_runs)
        agrees = "yes" if np.sign(mean) == np.sign(paper) else "no"
        big = "yes" if abs(mean) > 2 * std else "no"
        lines.append(f"| {label} | {mean:+.4f} ± {std:.4f} | {paper:+.4f} ({note}) | {agrees} | {big} |")

    for label, a, b, paper, note in PAPER_DELTAS:
        delta_row(label, [r["source"][a]["mean_auc"] for r in all_results], [r["source"][b]["mean_auc"] for r in all_results], paper, note)
    for size, paper in zip(opts.target_sizes, (0.0216, 0.0279)):
        delta_row(f"target {size} rows: pretrain + SFT (L0+L1) vs target alone",
                  [r["target"][f"{size}: pretrain + SFT, freeze L0+L1"]["mean_auc"] for r in all_results],
                  [r["target"][f"{size}: target domain alone"]["mean_auc"] for r in all_results], paper,
                  "cold-start scenarios, +0.0216 and +0.0279")
        best_other = [max(r["target"][f"{size}: pretrain + SFT, freeze {s}"]["mean_auc"] for s in ("none", "L0")) for r in all_results]
        delta_row(f"target {size} rows: freeze L0+L1 vs the better of none / L0",
                  [r["target"][f"{size}: pretrain + SFT, freeze L0+L1"]["mean_auc"] for r in all_results], best_other, 0.0043,
                  "L0+L1 best")

    lines += ["", "Deltas with no paper figure (the package's gradient surgery between the CTR and relevance gradients):", "",
              "| comparison | ours | gap > 2 std |", "|---|---|---|"]
    for label, a, b in OWN_DELTAS:
        mean, std = paired([r["source"][a]["mean_auc"] for r in all_results], [r["source"][b]["mean_auc"] for r in all_results])
        lines.append(f"| {label} | {mean:+.4f} ± {std:.4f} | {'yes' if abs(mean) > 2 * std else 'no'} |")

    lines += ["", "## Costs", ""]
    for text, (count, seconds) in encoding.items():
        lines.append(f"- One-off text encoding ({text} LM, frozen, 1 torch thread): {count} distinct texts in {seconds:.1f} s "
                     f"({count / max(seconds, 1e-9):.0f} texts/s), cached in safetensors and reused by every later run.")
    ref = [r["source"]["MMoE + DA + JS (reference)"] for r in all_results]
    lines.append(f"- Training rows/s of the reference model: {np.mean([x['rows_per_second'] for x in ref]):.0f} "
                 "(per-variant figures in the first table; the Trainer's loop with collation included).")
    lines.append(f"- Wall time of the whole benchmark: {opts.wall / 60:.1f} min; load average at the end "
                 f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other jobs share the machine: compare rows/s "
                 "within one run).")
    text = "\n".join(lines) + "\n"
    path.write_text(text, encoding="utf-8")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=float, default=5.0)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--target-epochs", type=float, default=10.0)
    parser.add_argument("--target-lr", type=float, default=2e-3)
    parser.add_argument("--target-sizes", type=int, nargs=2, default=[200, 1000])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mind-news", default=None, help=f"a MIND news.tsv (default: {MIND_SAMPLE} if present, else synthetic news)")
    parser.add_argument("--output", default="benchmarks/results/foundation.md")
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    transformers.utils.logging.set_verbosity_error()
    opts.news_tsv = opts.mind_news or (str(MIND_SAMPLE) if MIND_SAMPLE.is_file() else None)
    opts.news_label = "MIND sample news.tsv (real titles, entities, categories)" if opts.news_tsv else "the package's synthetic news"
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="foundation-bench-") as folder:
        work = Path(folder)
        caches = {"pretrained": TextFeatureCache.open(default_encoder_path(), work / "text_cache"),
                  "random": TextFeatureCache.open(random_lm(work / "random_lm"), work / "text_cache")}
        all_results = []
        for seed in opts.seeds:
            all_results.append(run_seed(seed, work, caches, opts))
        encoding = {}
        for r in all_results:
            for text, (count, seconds) in r["encoding"].items():
                encoding.setdefault(text, [0, 0.0])
                encoding[text][0] += count
                encoding[text][1] += seconds
    opts.wall = time.perf_counter() - start
    out = Path(opts.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(all_results, indent=1, default=float), encoding="utf-8")
    print(write_table(all_results, opts, encoding, out))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
