"""What the training recipes (`train_<model>.py`) share: argument parsing, the default (synthetic) data, the
load report written beside the metrics, and the comparison of models on the same dev impressions."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import transformers
from transformers import HfArgumentParser, set_seed

from ..data.synthetic import synthetic_fallback

__all__ = [
    "DEV_COMPARISON",
    "LOAD_REPORT",
    "corpus_report",
    "parse_recipe_arguments",
    "recipe_data",
    "write_dev_comparison",
    "write_load_report",
]

LOAD_REPORT = "load_report.json"
DEV_COMPARISON = "dev_comparison.json"
COMPARED_METRICS = ("auc", "mrr", "ndcg@5", "ndcg@10")


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


def write_dev_comparison(output_dir: str | os.PathLike, rows: dict[str, dict[str, float]],
                         names: dict[str, str] | None = None) -> str:
    """Writes ``output_dir/dev_comparison.json`` (`rows`: name -> metrics of one model on the same dev impressions,
    the model trained last) and returns it as a small table: one line per row, then the last row's AUC gain over
    each other row.

    Every row must have been computed on as many impressions (``num_impressions``): a comparison over different
    impressions would say nothing, so it is refused. `names` gives the table's label of a row (default: its key).
    """
    counts = {key: row.get("num_impressions") for key, row in rows.items()}
    if len(set(counts.values())) != 1:
        raise ValueError(f"the compared rows were scored on different numbers of impressions: {counts}")
    kept = ("num_impressions", "num_skipped_impressions")
    rows = {key: {k: v for k, v in row.items() if k in COMPARED_METRICS + kept} for key, row in rows.items()}
    path = Path(output_dir) / DEV_COMPARISON
    path.write_text(json.dumps(rows, indent=2) + "\n")

    names = {key: (names or {}).get(key, key) for key in rows}
    width = max(len(name) for name in names.values())
    lines = [f"Dev impressions: {next(iter(counts.values()))}, the same for every row ({path})",
             f"{'':{width}}  " + "  ".join(f"{m.upper().replace('NDCG', 'nDCG'):>7}" for m in COMPARED_METRICS)]
    lines += [f"{names[key]:{width}}  " + "  ".join(f"{row[m]:7.4f}" for m in COMPARED_METRICS)
              for key, row in rows.items()]
    *others, last = rows
    lines.append(f"AUC gain of {names[last]}: " + ", ".join(
        f"{rows[last]['auc'] - rows[key]['auc']:+.4f} over {names[key]}" for key in others
    ))
    return "\n".join(lines)
