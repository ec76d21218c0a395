"""Training-step cost of MTRec's gradient surgery, and how much the de-duplicating collator saves.

Exact command of benchmarks/results/step_time.md (from the repository root; writes the file and prints it):

    PYTHONPATH=. python benchmarks/step_time.py --num-batches 2 --repeats 3 --threads 1

(one torch thread because another process held one of the 2 cores; the defaults, 3 batches x 5 rounds with
torch's own thread count, take ~2x longer).

`--small` times only the 2-layer MiniLM (the default times the 6-layer all-MiniLM-L6-v2 and its 2-layer cut).

1. Step time. For each encoder, `MTRecModel`s with identical weights, one `MTRecTrainer` each with
   ``gradient_surgery`` = none / mtrec / pcgrad, λ = 0.3, run `MTRecTrainer.training_step` (forward +
   the backward pass(es) + the surgery; not the optimizer step, not the collation) on the SAME pre-collated
   batches of the synthetic corpus. Beside them, ``raw encoder``: the bare BERT forward + backward on the same
   distinct news of the batch (loss = mean of the squared final hidden states), so ``step / raw - 1`` is the
   overhead of everything that is not the encoder (user encoder, heads, losses, surgery). The variants are
   interleaved round-robin (batch by batch, with their order rotated every round) after warm-up rounds, so a
   load spike on this shared machine hits all of them alike. We report the median step time per variant and
   its ratio to ``none``; on a shared, noisy CPU the ratios are the figure to trust, not the absolute seconds.
2. De-duplication. Over one epoch of the train samples (shuffled with a fixed seed, last partial batch kept),
   for batch sizes 8, 16, 32: total news per batch = sum over samples of (history length + 1 + K candidates),
   i.e. the BERT passes a per-mention encoder would make; distinct = N, the rows `MTRecCollator` encodes. On the
   synthetic corpus, and on the semi-synthetic MIND-sample corpus (`simulate_mind_behaviors` over the real
   news.tsv, written to a temporary folder) when that file exists.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time

import _common  # before torch / transformers: offline set-up, the repository on sys.path
import torch

from modeling_mtrec import MTRecModel, MTRecTrainer, MTRecTrainingArguments
from modeling_mtrec.models.mtrec.collator import MTRecCollator

# variant -> gradient_surgery; "raw encoder" is the bare BERT forward + backward.
VARIANTS = {"raw encoder": None, "none": "none", "mtrec": "mtrec", "pcgrad": "pcgrad"}
ENCODERS = {
    "full": ("all-MiniLM-L6-v2 (6 layers, hidden 384)", None),
    "small": ("all-MiniLM-L6-v2 cut to 2 layers", 2),
}


def dedup_stats(
    corpus, batch_sizes, num_negatives: int, seed: int
) -> list[tuple[int, int, float, float, float]]:
    """(batch size, #batches, mean total, mean distinct, mean of per-batch distinct/total) over one epoch."""
    samples = corpus.train.with_format(None)[:]
    rows = [dict(zip(samples, values, strict=True)) for values in zip(*samples.values(), strict=True)]
    out = []
    for size in batch_sizes:
        order = list(range(len(rows)))
        random.Random(seed).shuffle(order)
        collator = MTRecCollator(corpus.news, num_negatives=num_negatives, seed=seed, with_aux_labels=False)
        totals, distincts, ratios = [], [], []
        for start in range(0, len(order), size):
            features = [rows[i] for i in order[start : start + size]]
            batch = collator(features)
            total = sum(len(f["history"]) + 1 + num_negatives for f in features)
            distinct = batch["news_input_ids"].shape[0]
            totals.append(total)
            distincts.append(distinct)
            ratios.append(distinct / total)
        out.append(
            (size, len(totals), statistics.mean(totals), statistics.mean(distincts), statistics.mean(ratios))
        )
    return out


def make_steps(encoder: str, layers: int | None, corpus, work_dir: str, seed: int) -> dict:
    """variant -> a function that runs one training step (or the raw encoder pass) on a batch."""
    steps = {}
    for variant, mode in VARIANTS.items():
        torch.manual_seed(seed)  # same head initialisation in every variant
        model = MTRecModel.from_pretrained_encoder(
            encoder,
            encoder_kwargs={"num_hidden_layers": layers} if layers else None,
            id2category={i: c for c, i in corpus.category2id.items()},
        )
        if mode is None:
            steps[variant] = _raw_encoder_step(model.news_encoder.train())
            continue
        args = MTRecTrainingArguments(
            output_dir=os.path.join(work_dir, f"out-{mode}"),
            gradient_surgery=mode,
            aux_weight=0.3,
            report_to=[],
            use_cpu=True,
            save_strategy="no",
            seed=seed,
        )
        trainer = MTRecTrainer(model=model, args=args, train_dataset=corpus.train, data_collator=lambda x: x)
        # set by the training loop; we call training_step directly
        trainer.current_gradient_accumulation_steps = 1
        steps[variant] = _trainer_step(trainer)
    return steps


def _raw_encoder_step(encoder):
    def step(batch):
        encoder.zero_grad(set_to_none=True)
        hidden = encoder(input_ids=batch["news_input_ids"], attention_mask=batch["news_attention_mask"])
        hidden.last_hidden_state.pow(2).mean().backward()

    return step


def _trainer_step(trainer):
    def step(batch):
        trainer.model.zero_grad(set_to_none=True)
        trainer.training_step(trainer.model, dict(batch))

    return step


def time_steps(steps: dict, batches: list, warmup: int, repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in steps}
    paired: dict[str, list[float]] = {name: [] for name in steps}  # per (round, batch): t / t_none
    names = list(steps)
    for round_ in range(warmup + repeats):
        for b, batch in enumerate(batches):
            shift = (round_ * len(batches) + b) % len(names)
            this_round = {}
            for name in names[shift:] + names[:shift]:  # rotated order: no variant always runs first
                start = time.perf_counter()
                steps[name](batch)
                this_round[name] = time.perf_counter() - start
            if round_ >= warmup:
                for name, seconds in this_round.items():
                    times[name].append(seconds)
                    paired[name].append(seconds / this_round["none"])
    return {"times": times, "paired": paired}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="only the 2-layer MiniLM")
    parser.add_argument("--batch-size", type=int, default=8, help="samples per timed batch")
    parser.add_argument("--num-batches", type=int, default=3, help="distinct timed batches")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds over the batches")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds over the batches")
    parser.add_argument("--dedup-batch-sizes", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--seed", type=int, default=0)
    args = _common.parse_arguments(parser, "step_time.md", encoder=True)
    command = args.command
    encoder, tokenizer = _common.load_tokenizer(args.encoder)
    work_dir = tempfile.mkdtemp(prefix="mtrec-step-time-")
    corpora = _common.mind_corpora(tokenizer, work_dir, args.mind_news, args.seed)
    synthetic = corpora["synthetic"]

    # The timed batches: the first batches of a seeded shuffle of the synthetic train samples, collated once.
    order = list(range(len(synthetic.train)))
    random.Random(args.seed).shuffle(order)
    collator = MTRecCollator(
        synthetic.news, num_negatives=4, pad_token_id=tokenizer.pad_token_id, seed=args.seed
    )
    batches = [
        collator([synthetic.train[i] for i in order[b * args.batch_size : (b + 1) * args.batch_size]])
        for b in range(args.num_batches)
    ]
    shapes = ", ".join(f"N={b['news_input_ids'].shape[0]} L={b['news_input_ids'].shape[1]}" for b in batches)

    lines = [
        "# Training-step time of the gradient-surgery modes, and news de-duplication per batch",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {_common.machine_facts()}.",
        "",
        "## Step time of `MTRecTrainer.training_step` (forward + backward(s) + surgery; no optimizer step)",
        "",
        f"Same {args.num_batches} collated batches of {args.batch_size} synthetic train samples ({shapes}) for "
        f"every mode; modes interleaved round-robin with rotated order, {args.warmup} warm-up round(s), "
        f"{args.repeats} timed rounds, i.e. {args.num_batches * args.repeats} timed steps per mode. "
        "**The ratios to `none` are the figure to trust**: this machine is shared and noisy, so absolute "
        "seconds move from run to run; a load spike hits all modes of a round alike.",
        "",
        "| encoder | variant | median step (s) | min (s) | ratio of medians to `none` | median paired ratio "
        "to `none` | overhead over raw encoder |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    models = ["small"] if args.small else ["full", "small"]
    for name in models:
        label, layers = ENCODERS[name]
        steps = make_steps(encoder, layers, synthetic, work_dir, args.seed)
        result = time_steps(steps, batches, args.warmup, args.repeats)
        base = statistics.median(result["times"]["none"])
        raw = statistics.median(result["times"]["raw encoder"])
        for variant in VARIANTS:
            med = statistics.median(result["times"][variant])
            overhead = "" if variant == "raw encoder" else f"{100 * (med / raw - 1):+.0f}%"
            lines.append(
                f"| {label} | {variant} | {med:.3f} | {min(result['times'][variant]):.3f} | {med / base:.2f} | "
                f"{statistics.median(result['paired'][variant]):.2f} | {overhead} |"
            )
            print(lines[-1], flush=True)
        del steps

    lines += [
        "",
        "## Distinct vs total news per batch (one epoch of train samples, K = 4)",
        "",
        "total = sum over the batch's samples of (history length + 1 positive + 4 negatives), the news a "
        "per-mention encoder would run BERT on; distinct = N, the rows `MTRecCollator` encodes once. Means over "
        "all batches of one seeded-shuffled epoch (last partial batch included). Histories are capped at 50.",
        "",
        "| corpus | train samples | batch size | batches | mean total | mean distinct | mean distinct / total |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for corpus_name, corpus in corpora.items():
        for size, count, total, distinct, ratio in dedup_stats(corpus, args.dedup_batch_sizes, 4, args.seed):
            lines.append(
                f"| {corpus_name} | {len(corpus.train)} | {size} | {count} | {total:.1f} | {distinct:.1f} | "
                f"{ratio:.3f} |"
            )
    if len(corpora) == 1:
        lines += ["", f"(MIND-sample corpus skipped: {args.mind_news} not found.)"]
    else:
        lines += [
            "",
            "The MIND-sample corpus keeps the 2,000 real news (titles, categories, entities) of the sample and "
            "simulates the users (`simulate_mind_behaviors`, seed "
            f"{args.seed}: 1,000 train users, 2-4 impressions each, histories of 5-20 clicks); only aggregate "
            "numbers are reported here.",
        ]
    _common.write_result(args.output, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
