"""MTRec training and evaluation speed on a CUDA GPU, and a projection of one epoch on MIND.

Exact command of benchmarks/results/gpu_speed.md (from the repository root, on a machine with a CUDA GPU):

    PYTHONPATH=. python benchmarks/gpu_speed.py --out benchmarks/results/gpu_speed.md

What it measures, on the semi-synthetic MIND-sample corpus (the real MIND-sample titles, simulated users with
50-click histories, `simulate_mind_behaviors`), batches of 32 training samples with K = 4 negatives collated by
`MTRecCollator` (each distinct news of a batch encoded once):

1. Step time, bf16 autocast (accelerate's, as `--bf16` gives), for two encoders: all-MiniLM-L6-v2 (pretrained) and
   a BERT-base-shaped encoder (12 layers, hidden 768, random weights: speed does not depend on the values):
   ``raw encoder`` = BERT forward + backward over the batch's distinct titles (loss = mean of the squared final
   states), against `MTRecTrainer.training_step` (forward, the backward pass(es), the surgery; not the optimizer)
   with ``gradient_surgery`` = none / mtrec / pcgrad on the SAME batches; titles/s counts distinct titles; peak
   GPU memory of each variant (weights included). The optimizer step (AdamW, fused where torch offers it) is timed
   on its own. Also the cheaper fine-tuning (`mtrec` step): the first 2/3 of the layers frozen
   (`freeze_encoder_layers`) with their states cached (`training.frozen_states`: gathered on the CPU and copied to
   the GPU inside the timing, as a collator's batch is), and LoRA r 8 on query/value (`training.lora`).
2. Attention kernels and compilation for the `mtrec` step: SDPA (transformers' default) vs eager attention, and
   `torch.compile` of the news encoder (dynamic shapes; the compile time is reported apart).
3. Fast evaluation: dev impressions/s of `fast_evaluate` (news encoded once, then one user-encoder pass per
   impression batch), float32 and under bf16 autocast.
4. A PROJECTION (not a measurement) of one training epoch on MINDsmall (236,344 train clicks) and MINDlarge
   (train clicks given by `--mind-large-clicks`), from the measured step time per batch of 32, assuming the
   collation keeps up (dataloader workers) and that MIND's batches hold as many distinct titles as these.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

import _common  # before torch / transformers: offline set-up, the repository on sys.path
import torch
import transformers
from transformers import AutoTokenizer, BertConfig

from modeling_mtrec import MTRecConfig, MTRecModel, MTRecTrainer, MTRecTrainingArguments, fast_evaluate
from modeling_mtrec.data.synthetic import simulate_mind_behaviors
from modeling_mtrec.default_encoder import default_encoder_path
from modeling_mtrec.models.mtrec.collator import MTRecCollator
from modeling_mtrec.models.mtrec.corpus import load_mind
from modeling_mtrec.training.frozen_states import FrozenStateCache
from modeling_mtrec.training.lora import apply_lora

DEFAULT_MIND_NEWS = str(_common.MIND_SAMPLE)
MIND_SMALL_TRAIN_CLICKS = 236_344
BATCH, NEGATIVES, HISTORY = 32, 4, 50


def gpu_facts() -> str:
    props = torch.cuda.get_device_properties(0)
    return (
        f"{props.name} ({props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs), "
        f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
        f"transformers {transformers.__version__}, python {platform.python_version()}"
    )


def build_batches(tokenizer, work_dir: str, news_tsv: str, num_batches: int, seed: int, num_users: int):
    folders = simulate_mind_behaviors(
        news_tsv, os.path.join(work_dir, "corpus"), seed=seed, num_users=num_users,
        history_length=(HISTORY, HISTORY),
    )
    corpus = load_mind(tokenizer, train_dir=folders["train"], eval_dir=folders["dev"], max_history_length=HISTORY)
    collator = MTRecCollator(corpus.news, num_negatives=NEGATIVES, pad_token_id=tokenizer.pad_token_id, seed=seed,
                             return_news_rows=True)  # rows of the frozen-state cache; the trainer drops them
    samples = corpus.train.shuffle(seed=seed).with_format(None)
    batches, mentions = [], []
    for start in range(0, num_batches * BATCH, BATCH):
        features = [samples[i] for i in range(start, start + BATCH)]
        batches.append(collator(features))
        mentions.append(sum(len(f["history"]) + 1 + NEGATIVES for f in features))
    return corpus, batches, mentions


def build_model(kind: str, corpus, freeze: int = 0, lora_r: int = 0) -> MTRecModel:
    torch.manual_seed(0)
    id2category = {i: c for c, i in corpus.category2id.items()}
    if kind == "minilm":
        model = MTRecModel.from_pretrained_encoder(
            default_encoder_path(), id2category=id2category, freeze_encoder_layers=freeze
        )
    elif kind == "bert-base":  # random weights; the MiniLM tokenizer has bert-base-uncased's 30,522-token vocabulary
        model = MTRecModel(MTRecConfig(encoder_config=BertConfig(vocab_size=30522), id2category=id2category,
                                       freeze_encoder_layers=freeze))
    else:  # "tiny": only for `--device cpu` dry runs of this script
        encoder = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                             intermediate_size=37)
        model = MTRecModel(MTRecConfig(encoder_config=encoder, id2category=id2category, user_attention_dim=16,
                                       freeze_encoder_layers=freeze))
    if lora_r:
        model = apply_lora(model, r=lora_r, alpha=2 * lora_r, dropout=0.1)
    return model.to(DEVICE).train()


DEVICE = "cuda"  # `--device cpu` only dry-runs the script on a small setting (its figures mean nothing)


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if DEVICE == "cuda" else float("nan")


def to_device(batch: dict) -> dict:
    return {k: v.to(DEVICE, non_blocking=True) for k, v in batch.items()}


def time_variant(fn, batches, rounds: int) -> tuple[float, float]:
    """(median seconds per batch, peak GiB) of fn over the batches, after one warm-up pass."""
    for batch in batches:
        fn(batch)
    sync()
    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(rounds):
        for batch in batches:
            start = time.perf_counter()
            fn(batch)
            sync()
            times.append(time.perf_counter() - start)
    return statistics.median(times), peak_gib()


def make_step(model: MTRecModel, mode: str | None, work_dir: str, states: FrozenStateCache | None = None):
    if mode is None:  # the bare encoder's forward + backward on the same titles
        prepared = model.news_encoder

        def raw(batch):
            with torch.autocast(DEVICE, dtype=torch.bfloat16):
                hidden = prepared(
                    input_ids=batch["news_input_ids"], attention_mask=batch["news_attention_mask"]
                ).last_hidden_state
            hidden.float().pow(2).mean().backward()
            model.zero_grad(set_to_none=True)

        return raw
    args = MTRecTrainingArguments(
        output_dir=work_dir, gradient_surgery=mode, aux_weight=0.3, bf16=True, report_to=[], save_strategy="no",
        use_cpu=DEVICE == "cpu",
    )
    trainer = MTRecTrainer(model=model, args=args, data_collator=lambda f: f[0])
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop; training_step is called directly
    if not getattr(model, "_bench_prepared", False):
        # accelerate patches the forward in place with its bf16 autocast, as `train()` does; once per model, so
        # the variants do not stack wrappers.
        trainer.accelerator.prepare_model(model)
        model._bench_prepared = True

    def step(batch):
        if states is not None:  # what FrozenStateCollator adds on the CPU, then copied as the batch is
            width = batch["news_input_ids"].shape[1]
            batch = {**batch, "news_hidden_states": states.gather(batch["news_rows"], width).to(DEVICE, non_blocking=True)}
        trainer.training_step(model, batch)
        model.zero_grad(set_to_none=True)

    return step


def optimizer_step_time(model: MTRecModel) -> float:
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=DEVICE == "cuda")
    for _ in range(3):
        optimizer.step()
    sync()
    start = time.perf_counter()
    for _ in range(20):
        optimizer.step()
    sync()
    model.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / 20


def fast_eval_speed(model: MTRecModel, corpus, bf16: bool) -> tuple[float, float]:
    sync()
    start = time.perf_counter()
    with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=bf16):
        result = fast_evaluate(model, corpus.news, corpus.eval, batch_size=512)
    sync()
    seconds = time.perf_counter() - start
    return len(corpus.eval) / seconds, result["auc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mind-news", default=DEFAULT_MIND_NEWS, help="a MIND news.tsv (real titles)")
    parser.add_argument("--num-batches", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--encoders", default="minilm,bert-base")
    parser.add_argument("--mind-large-clicks", type=int, default=3_383_656,
                        help="train clicks of MINDlarge used by the projection (an input, not a measurement)")
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--out", default=None)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: a dry run of the script")
    parser.add_argument("--num-users", type=int, default=1500, help="simulated train users of the corpus")
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_speed.py needs a CUDA GPU (--device cpu only dry-runs it)")
    torch.backends.cuda.matmul.allow_tf32 = True

    tokenizer = AutoTokenizer.from_pretrained(default_encoder_path())
    work_dir = tempfile.mkdtemp()
    corpus, batches, mentions = build_batches(
        tokenizer, work_dir, args.mind_news, args.num_batches, seed=0, num_users=args.num_users
    )
    titles = [b["news_input_ids"].shape[0] for b in batches]
    tokens = [int(b["news_attention_mask"].sum()) for b in batches]
    padded = [b["news_input_ids"].numel() for b in batches]
    batches = [to_device(b) for b in batches]
    mean_titles = statistics.mean(titles)
    lines = [
        "# MTRec on a GPU: step time, kernels, fast evaluation, epoch projection",
        "",
        f"Command: `PYTHONPATH=. python benchmarks/gpu_speed.py {' '.join(sys.argv[1:])}`",
        "",
        f"Device and software: {gpu_facts() if DEVICE == 'cuda' else 'CPU dry run'}.",
        "",
        f"Data: semi-synthetic MIND-sample corpus (real titles, simulated users, {HISTORY}-click histories), "
        f"{args.num_batches} batches of {BATCH} samples x (1 + K = {1 + NEGATIVES}) candidates, median over "
        f"{args.rounds} timed rounds after a warm-up round. Distinct titles per batch {mean_titles:.0f} "
        f"(per-mention encoding would need {statistics.mean(mentions):.0f}: distinct/total "
        f"{sum(titles) / sum(mentions):.3f}); real tokens / padded tokens {sum(tokens) / sum(padded):.3f}.",
        "",
    ]

    step_rows, kernel_rows, eval_rows, projection = [], [], [], {}
    for kind in args.encoders.split(","):
        name = {"minilm": "all-MiniLM-L6-v2", "bert-base": "BERT-base shape (random weights)"}.get(kind, kind)
        model = build_model(kind, corpus)
        results = {}
        for variant, mode in (("raw encoder", None), ("none", "none"), ("mtrec", "mtrec"), ("pcgrad", "pcgrad")):
            seconds, peak = time_variant(make_step(model, mode, work_dir), batches, args.rounds)
            results[variant] = seconds
            step_rows.append((name, variant, seconds, mean_titles / seconds, peak))
            print(name, variant, f"{seconds * 1e3:.1f} ms", f"{mean_titles / seconds:.0f} titles/s", flush=True)
        opt_seconds = optimizer_step_time(model)
        step_rows.append((name, "AdamW step (fused)", opt_seconds, float("nan"), float("nan")))
        ratios = (results["none"] / results["raw encoder"], results["mtrec"] / results["none"],
                  results["pcgrad"] / results["none"])
        projection[name] = (results["none"] + opt_seconds, results["mtrec"] + opt_seconds)

        # Kernels for the mtrec step: eager attention vs SDPA, and torch.compile of the encoder.
        model.news_encoder.config._attn_implementation = "eager"
        eager, _ = time_variant(make_step(model, "mtrec", work_dir), batches, args.rounds)
        model.news_encoder.config._attn_implementation = "sdpa"
        kernel_rows.append((name, "eager attention", eager, results["mtrec"] / eager))
        kernel_rows.append((name, "SDPA (default)", results["mtrec"], 1.0))
        if not args.skip_compile:
            encoder = model.news_encoder
            try:
                # The surgery takes two torch.autograd.grad calls through one graph (retain_graph=True), which
                # AOTAutograd's donated buffers forbid.
                torch._functorch.config.donated_buffer = False
                model.news_encoder = torch.compile(encoder, dynamic=True)
                start = time.perf_counter()
                step = make_step(model, "mtrec", work_dir)
                for batch in batches:
                    step(batch)
                torch.cuda.synchronize()
                compile_seconds = time.perf_counter() - start
                compiled, _ = time_variant(step, batches, args.rounds)
                kernel_rows.append((name, f"torch.compile(dynamic=True), compile+first pass {compile_seconds:.0f} s",
                                    compiled, results["mtrec"] / compiled))
            except Exception as error:  # reported, not hidden: a failed compile is a result too
                kernel_rows.append((name, f"torch.compile failed: {type(error).__name__}: {str(error)[:80]}",
                                    float("nan"), float("nan")))
            finally:
                model.news_encoder = encoder

        model.eval()
        for bf16 in (False, True):
            label = "bf16 autocast" if bf16 else "float32 (TF32 matmuls)"
            try:
                per_second, auc = fast_eval_speed(model, corpus, bf16)
            except Exception as error:  # reported, not hidden
                label += f" failed: {type(error).__name__}: {str(error)[:80]}"
                per_second, auc = float("nan"), float("nan")
            eval_rows.append((name, label, per_second, auc))
        model.train()
        print(name, "ratios none/raw, mtrec/none, pcgrad/none", [f"{r:.2f}" for r in ratios], flush=True)
        layers = model.config.encoder_config.num_hidden_layers
        del model
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
        # The cheaper fine-tuning, the `mtrec` step (each model alone on the GPU): frozen lower layers from
        # cached states, and LoRA.
        frozen = 2 * layers // 3
        for variant, spec in ((f"mtrec, frozen {frozen}/{layers} + cached states", {"freeze": frozen}),
                              ("mtrec, LoRA r 8 (query, value)", {"lora_r": 8})):
            tuned = build_model(kind, corpus, **spec)
            states = FrozenStateCache.from_model(tuned, corpus.news, batch_size=512) if spec.get("freeze") else None
            if DEVICE == "cuda":
                torch.cuda.reset_peak_memory_stats()
            seconds, peak = time_variant(make_step(tuned, "mtrec", work_dir, states), batches, args.rounds)
            step_rows.append((name, variant, seconds, mean_titles / seconds, peak))
            print(name, variant, f"{seconds * 1e3:.1f} ms", f"{mean_titles / seconds:.0f} titles/s", flush=True)
            del tuned, states

    lines += [
        "## 1. Training step, bf16 autocast",
        "",
        "| encoder | variant | ms / batch | distinct titles / s | x `none` | peak GPU memory (GiB) |",
        "|---|---|---|---|---|---|",
    ]
    none_time = {row[0]: row[2] for row in step_rows if row[1] == "none"}
    for name, variant, seconds, per_second, peak in step_rows:
        ratio = seconds / none_time[name]
        lines.append(
            f"| {name} | {variant} | {seconds * 1e3:.1f} | "
            f"{'' if per_second != per_second else f'{per_second:,.0f}'} | {ratio:.2f} | "
            f"{'' if peak != peak else f'{peak:.2f}'} |"
        )
    lines += [
        "",
        "`none` / raw encoder titles/s and `mtrec` / `none` step time, the issue's goals (>= 0.80 and <= 1.7):",
        "",
        "| encoder | none titles/s / raw titles/s | mtrec / none | pcgrad / none |",
        "|---|---|---|---|",
    ]
    for name in none_time:
        t = {row[1]: row[2] for row in step_rows if row[0] == name}
        lines.append(f"| {name} | {t['raw encoder'] / t['none']:.2f} | {t['mtrec'] / t['none']:.2f} | "
                     f"{t['pcgrad'] / t['none']:.2f} |")
    lines += [
        "",
        "## 2. Attention kernel and compilation (`mtrec` step)",
        "",
        "| encoder | setting | ms / batch | speed-up over it (SDPA time / its time) |",
        "|---|---|---|---|",
    ]
    for name, setting, seconds, speedup in kernel_rows:
        lines.append(f"| {name} | {setting} | {seconds * 1e3:.1f} | {speedup:.2f} |")
    lines += [
        "",
        f"## 3. Fast evaluation ({len(corpus.eval)} dev impressions, news table of {len(corpus.news)} titles encoded "
        "once inside the timing)",
        "",
        "| encoder | precision | impressions / s | dev AUC (untrained head) |",
        "|---|---|---|---|",
    ]
    for name, precision, per_second, auc in eval_rows:
        lines.append(f"| {name} | {precision} | {per_second:,.0f} | {auc:.4f} |")
    lines += [
        "",
        "## 4. PROJECTION of one training epoch (not measured: measured step times x steps)",
        "",
        f"Steps per epoch = train clicks / {BATCH}; time per step = measured `training_step` + AdamW step above. "
        f"Assumes collation keeps up (dataloader workers) and MIND batches of 32 hold about {mean_titles:.0f} "
        "distinct titles as here (MIND's own histories are shorter on average, which would make it faster). "
        f"MINDsmall: {MIND_SMALL_TRAIN_CLICKS:,} train clicks; MINDlarge: {args.mind_large_clicks:,} "
        "(`--mind-large-clicks`, an input). Evaluation time is not included.",
        "",
        "| encoder | corpus | steps | `none` (min) | `mtrec` (min) |",
        "|---|---|---|---|---|",
    ]
    for name, (none_step, mtrec_step) in projection.items():
        for corpus_name, clicks in (("MINDsmall", MIND_SMALL_TRAIN_CLICKS), ("MINDlarge", args.mind_large_clicks)):
            steps = -(-clicks // BATCH)
            lines.append(f"| {name} | {corpus_name} | {steps:,} | {steps * none_step / 60:.1f} | "
                         f"{steps * mtrec_step / 60:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
