r"""Pretrain the multi-domain search-and-recommendation foundation model (Gong et al., CIKM 2023) on source domains,
then fine-tune it on a cold-start target domain with a chosen freeze split, and report AUC per (domain, task).

With no data arguments it builds the package's embedded corpus (the package's synthetic news, or the news of a
MIND-format file given with ``--news_tsv``, e.g. the MIND sample's news.tsv; simulated users and labels) and runs
offline, a few minutes on 2 CPU cores:

    python train_foundation.py --output_dir outputs/foundation

On your own impression files (JSONL or Parquet, the format of `modeling_mtrec.models.foundation.data`), several
processes (on CPU, `python -m torch.distributed.run --nproc_per_node 2 train_foundation.py ...` also works):

    accelerate launch train_foundation.py --output_dir outputs/foundation-mine \
        --source_train src_train.jsonl --source_test src_test.jsonl \
        --target_train tgt_train.jsonl --target_test tgt_test.jsonl --freeze_split L0+L1

Other modes: ``--pretrain false`` trains a model on the target domain alone (the cold-start baseline);
``--init_from outputs/foundation/pretrained`` skips pretraining; ``--text_encoder none`` drops the text aspect;
``--finetune_text_encoder true`` puts the LM inside the model and trains it end to end (for GPUs).

Writes ``output_dir/pretrained/`` (the source-domain model), ``output_dir/`` (the fine-tuned model, loadable with
`AutoModel.from_pretrained` once `modeling_mtrec` is imported) and ``output_dir/foundation_metrics.json``: AUC per
(domain, task), their mean and per-user grouped CTR AUC on the source test rows after pretraining and on the target
test rows before (zero-shot) and after fine-tuning, plus timings and training rows/s.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field

import torch
import transformers
from transformers import BertConfig, BertModel

from modeling_mtrec import FoundationConfig, FoundationModel
from modeling_mtrec.data.stats import LoadStats
from modeling_mtrec.default_encoder import default_encoder_path
from modeling_mtrec.models.foundation.corpus import DEFAULT, TINY, build_foundation_corpus
from modeling_mtrec.models.foundation.data import (
    build_features,
    item_text_table,
    read_impressions,
    suggest_buckets,
)
from modeling_mtrec.training.curves import save_training_curves
from modeling_mtrec.training.foundation import (
    FoundationDataset,
    FoundationTrainer,
    FoundationTrainingArguments,
)
from modeling_mtrec.training.model_card import write_model_card
from modeling_mtrec.training.recipes import parse_recipe_arguments, remove_stale_outputs, require_model_type
from modeling_mtrec.vectors import TextFeatureCache

logger = logging.getLogger("train_foundation")


@dataclass
class FoundationScriptArguments:
    source_train: str | None = field(default=None, metadata={"help": "Source-domain training impressions (.jsonl/.parquet, comma list). Default: the embedded corpus."})
    source_test: str | None = field(default=None, metadata={"help": "Source-domain test impressions."})
    target_train: str | None = field(default=None, metadata={"help": "Target (cold-start) domain training impressions."})
    target_test: str | None = field(default=None, metadata={"help": "Target domain test impressions."})
    corpus_size: str = field(default="default", metadata={"help": "Embedded corpus: default or tiny."})
    corpus_seed: int = field(default=0, metadata={"help": "Seed of the embedded corpus."})
    news_tsv: str = field(default="synthetic", metadata={"help": "News of the embedded corpus: synthetic (the package's own) or a MIND-format news.tsv (e.g. the MIND sample's)."})
    max_target_train_rows: int | None = field(default=None, metadata={"help": "Use only the first N target training rows."})
    text_encoder: str = field(default="default", metadata={"help": "LM for the text aspect: default (all-MiniLM-L6-v2), a folder, none, or random (randomly initialised, the default's shape)."})
    text_cache_dir: str | None = field(default=None, metadata={"help": "Text-feature cache folder (default: <output_dir>/text_cache)."})
    finetune_text_encoder: bool = field(default=False, metadata={"help": "Hold the LM inside the model and train it end to end."})
    max_text_length: int = field(default=32, metadata={"help": "Tokens per query/item text."})
    max_history_length: int = field(default=20, metadata={"help": "Most recent history items kept."})
    embedding_dim: int = field(default=32, metadata={"help": "d: width of the aspect and user/query/item vectors."})
    gating: str = field(default="domain", metadata={"help": "mean, cls or domain."})
    mtl_module: str = field(default="mmoe", metadata={"help": "mmoe, ple or shared_bottom."})
    num_experts: int = field(default=4, metadata={"help": "MMoE experts."})
    expert_hidden_sizes: str = field(default="64,32", metadata={"help": "Expert MLP widths (comma list)."})
    domain_adaptive_dim: int = field(default=64, metadata={"help": "Width of x̂."})
    use_domain_adaptive: bool = field(default=True, metadata={"help": "x̂ = W(x ⊕ E_D) (else W x)."})
    interaction_features: bool = field(
        default=True, metadata={"help": "Append user⊙item and query⊙item to x (false: the paper's plain concatenation)."}
    )
    regularizer: str = field(default="js", metadata={"help": "js, mmd or none."})
    regularizer_weight: float = field(default=0.1, metadata={"help": "Weight of L_reg."})
    js_estimator: str = field(default="histogram", metadata={"help": "histogram or softmax."})
    aspects: str = field(default="id,text,sparse", metadata={"help": "Aspects of queries and items (comma list)."})
    pretrain: bool = field(default=True, metadata={"help": "Pretrain on the source domains (false: target domain alone)."})
    init_from: str | None = field(default=None, metadata={"help": "A pretrained folder: skip pretraining."})
    freeze_split: str = field(default="L0+L1", metadata={"help": "Frozen during fine-tuning: none, L0 or L0+L1."})
    target_epochs: float = field(default=10.0, metadata={"help": "Epochs over the target training rows."})
    target_learning_rate: float | None = field(default=None, metadata={"help": "Learning rate on the target (default: --learning_rate)."})
    lenient: bool = field(default=False, metadata={"help": "Skip and count malformed rows instead of failing."})
    num_threads: int | None = field(
        default=1, metadata={"help": "torch intra-op threads on CPU (0: torch's default). The MLPs here are too small to "
                                     "gain from threads; on a shared 2-core CPU, 2 threads made steps far slower."}
    )


def _files(value: str | None) -> list[str]:
    return [v for v in (value or "").split(",") if v]


def _text_source(args: FoundationScriptArguments, output_dir: str):
    """(LM folder or None, a `TextFeatureCache` or None, tokenizer or None)."""
    if args.text_encoder == "none":
        return None, None, None
    lm = default_encoder_path() if args.text_encoder in ("default", "random") else args.text_encoder
    if args.text_encoder == "random":  # the default's shape, random weights: what pretraining of the LM buys
        folder = os.path.join(output_dir, "random_lm")
        if not os.path.isdir(folder):
            transformers.set_seed(0)
            BertModel(BertConfig.from_pretrained(lm), add_pooling_layer=False).save_pretrained(folder)
            transformers.AutoTokenizer.from_pretrained(lm).save_pretrained(folder)
        lm = folder
    if args.finetune_text_encoder:
        return lm, None, transformers.AutoTokenizer.from_pretrained(lm)
    cache = TextFeatureCache.open(lm, args.text_cache_dir or os.path.join(output_dir, "text_cache"), args.max_text_length)
    return lm, cache, None


def _train(model, features, args: FoundationTrainingArguments, output_dir: str, **overrides) -> tuple[FoundationTrainer, dict]:
    args = dataclasses.replace(args, output_dir=output_dir, **overrides)
    trainer = FoundationTrainer(model=model, args=args, train_dataset=FoundationDataset(features))
    start = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - start
    epochs = float(args.num_train_epochs)
    timing = {"train_seconds": round(seconds, 2), "train_rows": len(features), "epochs": epochs,
              "rows_per_second": round(len(features) * epochs / seconds, 1), "train_loss": result.training_loss}
    return trainer, timing


def main() -> None:
    args, training_args = parse_recipe_arguments(
        (FoundationScriptArguments, FoundationTrainingArguments), description=__doc__,
        output_dir="outputs/foundation", per_device_train_batch_size=256, learning_rate=2e-3, num_train_epochs=5,
        weight_decay=0.0, warmup_steps=0, logging_steps=20, eval_strategy="no", save_strategy="no", report_to="none",
        seed=42, lr_scheduler_type="constant", dataloader_drop_last=False,
        # On a machine without CUDA, run on the CPU explicitly: that is what makes torchrun's processes join one
        # gloo process group (without it each process trains alone).
        use_cpu=not torch.cuda.is_available(),
    )
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    output_dir = training_args.output_dir
    if args.init_from:  # a folder of another model: an error naming it, before any work
        require_model_type(args.init_from, FoundationConfig.model_type, flag="--init_from")
    if training_args.should_save:  # a reused folder holds this run's metrics only (a failed run leaves none)
        remove_stale_outputs(output_dir, ("foundation_metrics.json",))
    timings: dict[str, object] = {}

    files = {name: _files(getattr(args, name)) for name in ("source_train", "source_test", "target_train", "target_test")}
    if not files["target_train"] or not files["target_test"]:
        with training_args.main_process_first(desc="embedded corpus"):
            news = None if args.news_tsv == "synthetic" else args.news_tsv
            sizes = {"default": DEFAULT, "tiny": TINY}[args.corpus_size]
            corpus = build_foundation_corpus(os.path.join(output_dir, "corpus"), news_tsv=news, seed=args.corpus_seed, sizes=sizes)
        files = {name: files[name] or [corpus[name]] for name in files}
        logger.info("No --target_train/--target_test: the embedded corpus in %s", os.path.dirname(corpus["info"]))
    stats = LoadStats()
    rows = {name: read_impressions(paths, lenient=args.lenient, stats=stats) if paths else None for name, paths in files.items()}
    if args.max_target_train_rows is not None:
        rows["target_train"] = rows["target_train"].select(range(min(args.max_target_train_rows, len(rows["target_train"]))))
    targets = sorted(set(rows["target_train"]["domain"]))
    if len(targets) != 1:
        raise ValueError(f"the target files must hold exactly one domain, got {targets}")
    target = targets[0]
    item_texts = item_text_table(*(r for r in rows.values() if r is not None))

    start = time.perf_counter()
    lm, cache, tokenizer = _text_source(args, output_dir)
    aspects = [a for a in args.aspects.split(",") if a and (a != "text" or lm is not None)]
    feature_kwargs = dict(text_cache=cache, tokenizer=tokenizer, item_texts=item_texts,
                          max_history_length=args.max_history_length, max_text_length=args.max_text_length, stats=stats)
    buckets = suggest_buckets(*(r for r in rows.values() if r is not None))

    def new_config(domains: list[str]) -> FoundationConfig:
        lm_config = BertConfig.from_pretrained(lm) if lm is not None else None
        return FoundationConfig(
            domains=domains, embedding_dim=args.embedding_dim, id_embedding_dim=args.embedding_dim, **buckets,
            sparse_hidden_sizes=[args.embedding_dim], text_embed_dim=lm_config.hidden_size if lm_config else 0,
            text_encoder_config=lm_config.to_dict() if args.finetune_text_encoder and lm_config else None,
            encoder_name_or_path=lm, aspects=aspects, gating=args.gating, mtl_module=args.mtl_module,
            num_experts=args.num_experts, expert_hidden_sizes=[int(h) for h in args.expert_hidden_sizes.split(",")],
            domain_adaptive_dim=args.domain_adaptive_dim, use_domain_adaptive=args.use_domain_adaptive,
            interaction_features=args.interaction_features,
            regularizer=args.regularizer, regularizer_weight=args.regularizer_weight, js_estimator=args.js_estimator,
            tower_hidden_sizes=[16], user_encoder_heads=2,
        )

    def load_lm_weights(model: FoundationModel) -> None:
        if model.embeddings.text_model is not None:
            model.embeddings.text_model.load_state_dict(BertModel.from_pretrained(lm, add_pooling_layer=False).state_dict())

    metrics: dict[str, object] = {"target_domain": target, "freeze_split": args.freeze_split, "pretrain": args.pretrain}
    trainer = None
    if args.init_from:
        model = FoundationModel.from_pretrained(args.init_from)
    elif args.pretrain:
        source_domains = sorted(set(rows["source_train"]["domain"]))
        model = FoundationModel(new_config(source_domains))
        load_lm_weights(model)
        source_train = build_features(rows["source_train"], model.config, **feature_kwargs)
        timings["text_encoding_seconds"] = round(time.perf_counter() - start, 2)
        trainer, timings["pretrain"] = _train(model, source_train, training_args, os.path.join(output_dir, "pretrained"))
        trainer.save_model(os.path.join(output_dir, "pretrained"))
        trainer.create_model_card()  # save_model writes no card
        if rows["source_test"] is not None and trainer.is_world_process_zero():
            metrics["source_after_pretraining"] = trainer.evaluate(
                FoundationDataset(build_features(rows["source_test"], model.config, **feature_kwargs)), metric_key_prefix="source")
    else:
        model = FoundationModel(new_config([target]))
        load_lm_weights(model)

    if target not in model.config.domains:
        model.add_domain(target)
        frozen = model.freeze(args.freeze_split)
        metrics["frozen_parameters"] = len(frozen)
    target_train = build_features(rows["target_train"], model.config, **feature_kwargs)
    target_test = FoundationDataset(build_features(rows["target_test"], model.config, **feature_kwargs))
    timings.setdefault("text_encoding_seconds", round(time.perf_counter() - start, 2))
    if cache is not None:
        if trainer is None or trainer.is_world_process_zero():
            cache.save()
        timings["texts_encoded_by_lm"] = cache.encoded
        timings["lm_encoding_seconds"] = round(cache.encode_seconds, 2)
    if args.pretrain or args.init_from:
        probe = FoundationTrainer(model=model, args=dataclasses.replace(training_args, output_dir=os.path.join(output_dir, "tmp")))
        metrics["target_before_finetuning"] = probe.evaluate(target_test, metric_key_prefix="target")
    trainer, timings["finetune"] = _train(
        model, target_train, training_args, output_dir, num_train_epochs=args.target_epochs,
        learning_rate=args.target_learning_rate or training_args.learning_rate,
    )
    metrics["target_after_finetuning"] = trainer.evaluate(target_test, metric_key_prefix="target")
    metrics["timings"] = timings
    metrics["num_processes"] = training_args.world_size
    metrics["load_stats"] = stats.as_dict()
    if trainer.is_world_process_zero():
        trainer.save_model(output_dir)
        card_metrics = {k.removeprefix("target_"): v for k, v in metrics["target_after_finetuning"].items()}
        dataset = "foundation-embedded-corpus" if not args.target_train else os.path.basename(files["target_test"][0])
        write_model_card(output_dir, model.config, card_metrics, dataset_name=dataset)
        save_training_curves(trainer.state.log_history, output_dir, model.config.model_type)
        with open(os.path.join(output_dir, "foundation_metrics.json"), "w") as f:
            json.dump(metrics, f, indent=2)
        logger.info("Target AUC (ctr / relevance): %.4f / %.4f; metrics in %s",
                    metrics["target_after_finetuning"].get(f"target_{target}/ctr_auc", float("nan")),
                    metrics["target_after_finetuning"].get(f"target_{target}/relevance_auc", float("nan")),
                    os.path.join(output_dir, "foundation_metrics.json"))


if __name__ == "__main__":
    main()
