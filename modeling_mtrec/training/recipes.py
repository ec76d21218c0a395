"""What the training recipes (`train_<model>.py`) share: argument parsing, the default (synthetic) data, and the
load report written beside the metrics."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import transformers
from transformers import HfArgumentParser, set_seed

from ..data.synthetic import synthetic_fallback

__all__ = ["LOAD_REPORT", "corpus_report", "parse_recipe_arguments", "recipe_data", "write_load_report"]

LOAD_REPORT = "load_report.json"


def parse_recipe_arguments(dataclass_types: tuple[type, ...], **defaults: Any) -> tuple:
    """Parses the command line into the recipe's dataclasses (`defaults` override the fields' own; any flag
    overrides them), sets up logging and the seed. Returns one instance per dataclass."""
    parser = HfArgumentParser(dataclass_types)
    parser.set_defaults(**defaults)
    parsed = parser.parse_args_into_dataclasses()
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity_warning()
    set_seed(parsed[-1].seed)
    return tuple(parsed)


def recipe_data(script_args, training_args, **generate_kwargs: Any) -> tuple[str, str | None, str]:
    """``(train_dir, dev_dir, dataset name for the model card)``: the recipe's `--train_dir` / `--dev_dir`, or the
    synthetic corpus (`synthetic_fallback`, written once under DDP) when there is no `--train_dir`."""
    train_dir, dev_dir = synthetic_fallback(
        script_args.train_dir, script_args.dev_dir, training_args.output_dir, seed=script_args.synthetic_seed,
        context=training_args.main_process_first(desc="synthetic corpus"), **generate_kwargs,
    )
    if script_args.train_dir is None:
        return train_dir, dev_dir, "synthetic-mind"
    return train_dir, dev_dir, os.path.basename(os.path.normpath(dev_dir or train_dir))


def corpus_report(corpus, **folders: str | os.PathLike | None) -> dict[str, Any]:
    """What a loaded corpus (`MINDCorpus` or `RetrievalCorpus`) holds: its folders, how many news and train / eval
    rows were kept (MTRec: clicks / impressions; two-tower: clicks / clicks), and every problem counted while
    loading (`LoadStats`: unknown ids, skipped impressions, malformed rows under ``--lenient``, ...)."""
    return {
        **{name: os.fspath(folder) if folder else None for name, folder in folders.items()},
        "news": len(corpus.news),
        "train_rows": len(corpus.train) if corpus.train is not None else 0,
        "eval_rows": len(corpus.eval) if corpus.eval is not None else 0,
        "problems": corpus.stats.as_dict(),
    }


def write_load_report(output_dir: str | os.PathLike, *, extend: bool = False, **sections: dict[str, Any]) -> Path:
    """Writes ``output_dir/load_report.json``, one entry per section (e.g. ``corpus=...``; with ``extend=True`` the
    sections are added to the file of this run, e.g. ``predictions=...``), so that the metric files beside it always
    say what they were computed on. The recipes write it as soon as the data is loaded, before training: a run that
    fails later still leaves it."""
    path = Path(output_dir) / LOAD_REPORT
    path.parent.mkdir(parents=True, exist_ok=True)
    report = json.loads(path.read_text()) if extend and path.is_file() else {}
    report.update(sections)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path
