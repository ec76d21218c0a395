"""What the training recipes (`train_<model>.py`) share: argument parsing and the default (synthetic) data."""

from __future__ import annotations

import logging
import os
from typing import Any

import transformers
from transformers import HfArgumentParser, set_seed

from ..data.synthetic import synthetic_fallback

__all__ = ["parse_recipe_arguments", "recipe_data"]


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
