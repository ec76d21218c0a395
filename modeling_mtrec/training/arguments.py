"""Plain `TrainingArguments` given to one of the package's Trainers, turned into that Trainer's own arguments."""

from __future__ import annotations

import dataclasses
import logging
from typing import TypeVar

from transformers import TrainingArguments

logger = logging.getLogger(__name__)

__all__ = ["upgrade_arguments"]

A = TypeVar("A", bound=TrainingArguments)


def _default(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def upgrade_arguments(args: TrainingArguments, cls: type[A]) -> A:
    """`args` as a `cls` (a `TrainingArguments` subclass such as `MTRecTrainingArguments`); a `cls` is returned as it is.

    The fields `cls` adds (e.g. ``aux_weight``) take their defaults; a field whose default `cls` changes (e.g.
    ``remove_unused_columns=False``, which the collators need, or ``label_names``) takes `cls`'s default when `args`
    kept `TrainingArguments`' own, else the value given. Without this, a Trainer built with plain arguments trained
    and then failed in evaluation, or on a missing attribute, after the run.
    """
    if isinstance(args, cls):
        return args
    plain = {field.name: field for field in dataclasses.fields(TrainingArguments) if field.init}
    values, adopted = {}, []
    for field in dataclasses.fields(cls):
        if not field.init or field.name not in plain:
            continue
        value, plain_default, own_default = getattr(args, field.name), _default(plain[field.name]), _default(field)
        if own_default != plain_default and value == plain_default:
            adopted.append(f"{field.name}={own_default!r}")
            continue
        values[field.name] = value
    if adopted:
        logger.info("plain TrainingArguments turned into %s with %s", cls.__name__, ", ".join(adopted))
    return cls(**values)
