"""What the training recipes (`train_<model>.py`) share: argument parsing (and a `--help` that opens with the
recipe), the default (synthetic) data, checks of the folders a recipe is given, the removal of a previous run's
outputs, the load report written beside the metrics, and the comparison of models on the same dev impressions."""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import dataclasses
import json
import logging
import os
import platform
import sys
from pathlib import Path
from typing import Any

import transformers
from transformers import AutoTokenizer, HfArgumentParser, TrainingArguments, set_seed

from ..data.synthetic import synthetic_fallback

__all__ = [
    "DEV_COMPARISON",
    "LOAD_REPORT",
    "corpus_report",
    "load_tokenizer",
    "parse_recipe_arguments",
    "recipe_data",
    "remove_stale_outputs",
    "require_model_type",
    "reuse_freed_memory",
    "write_dev_comparison",
    "write_load_report",
]

LOAD_REPORT = "load_report.json"
DEV_COMPARISON = "dev_comparison.json"
COMPARED_METRICS = ("auc", "mrr", "ndcg@5", "ndcg@10")

logger = logging.getLogger(__name__)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The recipe's docstring as written (its commands keep their lines), and every option's default."""


def recipe_parser(dataclass_types: tuple[type, ...], *, description: str | None = None, **defaults: Any) -> HfArgumentParser:
    """`HfArgumentParser` over the recipe's dataclasses, the last one a `TrainingArguments`, whose `--help` reads
    top-down: what the recipe does (`description`, e.g. its docstring), the recipe's own options, the options its
    `TrainingArguments` subclass adds, then the ~100 options every transformers Trainer takes."""
    prog = os.path.basename(sys.argv[0]) or "recipe"
    parser = HfArgumentParser(
        dataclass_types, description=description, formatter_class=_HelpFormatter,
        usage=f"{prog} [--output_dir DIR] [options]   (--help: the recipe, then its options, then the Trainer's)",
    )
    parser.set_defaults(**defaults)
    *script_types, training_type = dataclass_types
    trainer_fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    own_fields = {f.name for f in dataclasses.fields(training_type)} - trainer_fields
    groups = [
        (parser.add_argument_group(f"{prog} options"), {f.name for t in script_types for f in dataclasses.fields(t)}),
        (parser.add_argument_group(f"{training_type.__name__} options (this model's training)"), own_fields),
        (parser.add_argument_group("transformers.TrainingArguments options (every Trainer's)"), trainer_fields),
    ]
    general = parser._optionals  # argparse keeps no public way to move an option between groups
    for action in list(general._group_actions):
        for group, names in groups:
            if action.dest in names:
                general._group_actions.remove(action)
                group._group_actions.append(action)
                break
    return parser


def parse_recipe_arguments(dataclass_types: tuple[type, ...], *, description: str | None = None, **defaults: Any) -> tuple:
    """Parses the command line into the recipe's dataclasses (`defaults` override the fields' own; any flag
    overrides them; see `recipe_parser`), sets up logging, the seed and the reuse of freed memory
    (`reuse_freed_memory`). Returns one instance per dataclass."""
    parsed = recipe_parser(dataclass_types, description=description, **defaults).parse_args_into_dataclasses()
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity_warning()
    set_seed(parsed[-1].seed)
    reuse_freed_memory()
    return tuple(parsed)


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
# Blocks up to this size come from (and return to) the process heap: above the largest per-step tensors of the
# models here (the flat surgery gradients of a 6-layer MiniLM are 91 MB; bert-base's 440 MB).
_HEAP_BLOCK_LIMIT = 1 << 30


def reuse_freed_memory() -> bool:
    """Keeps large freed CPU tensors' memory in the process for reuse (Linux with glibc; elsewhere a no-op).

    Why: PyTorch's CPU allocator takes every tensor from malloc, and glibc serves a block above its mmap threshold
    (at most 32 MB) with fresh pages from the kernel and unmaps it on free. A training step allocates and frees
    parameter-sized tensors several times (the gradient of each task, the embedding matrix's dense gradient, the
    flat vectors of the gradient surgery: ~0.5 GB per step for all-MiniLM-L6-v2), so every step paid a page fault
    and a zeroed page for each 4 KB of them. Raising the mmap and trim thresholds lets malloc reuse that memory:
    the arithmetic is unchanged (the same weights after training, bit for bit), only the system time goes.
    `benchmarks/memory_reuse.py` measures it on the main job; on a GPU the effect is nil (its tensors do not live in
    malloc). Setting `MALLOC_MMAP_THRESHOLD_` in the environment leaves glibc's choice alone.

    Returns whether the thresholds were set.
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, _HEAP_BLOCK_LIMIT)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _HEAP_BLOCK_LIMIT))


def recipe_data(script_args, training_args, **generate_kwargs: Any) -> tuple[str, str | None, str]:
    """``(train_dir, dev_dir, dataset name for the model card)``: the recipe's `--train_dir` / `--dev_dir`, or the
    synthetic corpus (`synthetic_fallback`, written once under DDP; `generate_kwargs`, e.g. ``preset="demo"``, go to
    `generate_synthetic_mind`) when there is no `--train_dir`."""
    train_dir, dev_dir = synthetic_fallback(
        script_args.train_dir, script_args.dev_dir, training_args.output_dir, seed=script_args.synthetic_seed,
        context=training_args.main_process_first(desc="synthetic corpus"), **generate_kwargs,
    )
    if script_args.train_dir is None:
        return train_dir, dev_dir, "synthetic-mind"
    return train_dir, dev_dir, os.path.basename(os.path.normpath(dev_dir or train_dir))


def remove_stale_outputs(output_dir: str | os.PathLike, names: tuple[str, ...]) -> list[str]:
    """Removes the files `names` that a previous run left in `output_dir` (and says so), so that a reused folder ends
    up holding this run's outputs only: a run without ``--do_predict`` must not leave the previous model's
    ``prediction.txt`` beside its own model. Returns the names removed."""
    removed = [name for name in names if (Path(output_dir) / name).is_file()]
    for name in removed:
        (Path(output_dir) / name).unlink()
    if removed:
        logger.warning("%s held a previous run's %s: removed (this run writes its own)", output_dir, ", ".join(removed))
    return removed


TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json")


def load_tokenizer(name_or_path: str | os.PathLike, *, flag: str):
    """The tokenizer of a checkpoint given by a recipe flag (`flag`, e.g. ``"--init_from"``), or a `ValueError`
    naming the folder and what is wrong with it (instead of transformers' advice to install sentencepiece)."""
    folder = Path(name_or_path)
    if folder.is_dir() and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ValueError(
            f"{flag} {folder}: the folder holds no tokenizer (none of {', '.join(TOKENIZER_FILES)}); save the "
            "tokenizer beside the model (the recipes do), or copy it from the checkpoint the model started from"
        )
    try:
        return AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(f"{flag} {name_or_path}: its tokenizer cannot be loaded: {error}") from error


def require_model_type(folder: str | os.PathLike, model_type: str | tuple[str, ...] | None = None, *, flag: str,
                       refuse: tuple[str, ...] = ()) -> str:
    """Checks a local checkpoint folder given by a recipe flag before any work: it must hold a ``config.json`` whose
    ``model_type`` is `model_type` (one of them, when a tuple; any, when None) and none of `refuse`. Raises a
    `ValueError` naming the folder and what it holds. Returns its model type ("" for a Hub id, not checked here)."""
    path = Path(folder)
    if not path.exists():
        if os.path.isabs(folder) or os.fspath(folder).startswith("."):
            raise ValueError(f"{flag} {folder}: no such folder")
        return ""  # a Hub id: transformers checks it when it loads it
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ValueError(f"{flag} {folder}: not a model folder (no config.json)")
    try:
        found = json.loads(config_file.read_text()).get("model_type", "")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as error:
        raise ValueError(f"{flag} {folder}: its config.json is not a JSON object ({error})") from error
    expected = (model_type,) if isinstance(model_type, str) else model_type
    if (expected is not None and found not in expected) or found in refuse:
        wanted = f"a model of type {' or '.join(map(repr, expected))}" if expected else "a text encoder"
        raise ValueError(f"{flag} {folder}: a model of type {found!r}, but {flag} takes {wanted}")
    return found


def corpus_report(corpus, **folders: str | os.PathLike | None) -> dict[str, Any]:
    """What a loaded corpus (`MINDCorpus` or `RetrievalCorpus`) holds: its folders and format, which auxiliary tasks its
    labels allow (`label_report`), how many news and train / eval
    rows were kept (MTRec: clicks / impressions; two-tower: clicks / clicks), and every problem counted while
    loading (`LoadStats`: unknown ids, skipped impressions, malformed rows under ``--lenient``, ...)."""
    return {
        **{name: os.fspath(folder) if folder else None for name, folder in folders.items()},
        "data_format": corpus.data_format,
        "auxiliary_tasks": corpus.labels,  # label_report: "on", or why the corpus lacks a task's labels
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
