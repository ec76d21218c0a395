"""Cached outputs of MTRec's frozen lower layers: each news' hidden states after layer k, computed once.

With `MTRecConfig.freeze_encoder_layers` = k the embeddings and the first k BERT layers never change, so their
output for a title is a constant (Legommenders caches it; PLM-NR fine-tunes only the top layers). `FrozenStateCache`
holds it for every row of a news table; `FrozenStateCollator` adds the rows of each batch as
``news_hidden_states (N, L, D)``, and `MTRecModel.forward` then runs only the layers above k.

NOTE: the states are computed without gradient and without dropout in the frozen part. `MTRecModel` runs its frozen
layers without dropout in training too (`MTRecModel.train`), so a step from cached states computes what a step
through the whole encoder computes, up to float rounding (other matrix shapes: the cache pads each title to the
longest of its encoding batch, a training batch to its own longest title; padded positions never reach a real one).

Which cache applies when: the history-vector cache (`MTRecTrainingArguments.history_cache_steps`) reuses whole
news VECTORS of the last T steps, without gradient, so the encoder's top is skipped for those news but their
vectors are slightly stale; frozen states are exact and every news still goes through the top layers with a
gradient. The two compose: history news taken from the vector cache skip the top layers as well.

File (`save` / `load`): one safetensors file, tensors ``states (N, L, D)`` and ``lengths (N,)``, metadata
``format``, ``fingerprint`` (the frozen part's: embeddings, first k layers, encoder config), ``freeze_encoder_layers``
and ``news_table`` (a hash of the table's tokens). A file whose fingerprint or table differ is refused
(`StaleCacheError`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..models.mtrec.processing_mtrec import title_batches
from ..vectors import StaleCacheError, encoder_fingerprint

logger = logging.getLogger(__name__)

__all__ = ["FrozenStateCache", "FrozenStateCollator", "frozen_fingerprint"]

_FORMAT = "mtrec-frozen-states/1"


def frozen_fingerprint(model) -> str:
    """`vectors.encoder_fingerprint` (the package's one encoder fingerprint) of the frozen part only (embeddings, first `freeze_encoder_layers` layers and the
    encoder config): it stays the same while the layers above train."""
    encoder, k = model.news_encoder, model.config.freeze_encoder_layers
    part = nn.ModuleDict({"embeddings": encoder.embeddings, "layer": nn.ModuleList(encoder.encoder.layer[:k])})
    part.config = encoder.config
    return encoder_fingerprint(part)


def _token_lists(news) -> list[list[int]]:
    return news.select_columns(["input_ids"]).with_format(None)[:]["input_ids"]


def _table_hash(token_lists: list[list[int]]) -> str:
    return hashlib.sha256(json.dumps(token_lists).encode()).hexdigest()[:16]


class FrozenStateCache:
    """Hidden states after the frozen layers, by news-table row.

    Attributes:
        states (`torch.Tensor` of shape `(N, L, D)`, CPU): row i holds news i's states, padded with zeros to the
            table's longest title L.
        lengths (`torch.Tensor` of shape `(N,)`): tokens of each title.
        fingerprint (`str`): `frozen_fingerprint` of the model that computed them.
        num_layers (`int`): k, the frozen layers.
        news_table (`str`): hash of the news table's tokens.
    """

    def __init__(self, states: torch.Tensor, lengths: torch.Tensor, *, fingerprint: str, num_layers: int, news_table: str):
        if states.ndim != 3 or lengths.shape != states.shape[:1]:
            raise ValueError(f"states must be (N, L, D) with lengths (N,), got {tuple(states.shape)}, {tuple(lengths.shape)}")
        self.states, self.lengths = states, lengths
        self.fingerprint, self.num_layers, self.news_table = fingerprint, num_layers, news_table

    def __len__(self) -> int:
        return self.states.shape[0]

    def __repr__(self) -> str:
        return f"FrozenStateCache({len(self)} news, {tuple(self.states.shape[1:])}, k={self.num_layers})"

    @classmethod
    def from_model(
        cls, model, news, *, batch_size: int = 256, device: str | torch.device | None = None, dtype=torch.float32
    ) -> FrozenStateCache:
        """Runs the frozen part once over every row of a tokenised news table (`MINDCorpus.news`). (N, L, D)."""
        k = model.config.freeze_encoder_layers
        if k < 1:
            raise ValueError("frozen states need a model with config.freeze_encoder_layers > 0")
        token_lists = _token_lists(news)
        width = max((len(tokens) for tokens in token_lists), default=1)
        states = torch.zeros(len(token_lists), width, model.config.hidden_size, dtype=dtype)
        pad = model.config.encoder_config.pad_token_id or 0
        device = device or next(model.parameters()).device
        for rows, batch in title_batches(token_lists, pad, batch_size):
            hidden = model.frozen_hidden_states(batch["input_ids"].to(device), batch["attention_mask"].to(device))
            states[rows, : hidden.shape[1]] = hidden.to("cpu", dtype)  # (b, l, D)
        lengths = torch.tensor([len(tokens) for tokens in token_lists], dtype=torch.long)
        return cls(states, lengths, fingerprint=frozen_fingerprint(model), num_layers=k, news_table=_table_hash(token_lists))

    def gather(self, rows: torch.Tensor, width: int) -> torch.Tensor:
        """States of news-table `rows` (n,) cut or zero-padded to a batch's title `width`. -> (n, width, D)."""
        states = self.states[rows.cpu(), :width]  # (n, min(width, L), D)
        return nn.functional.pad(states, (0, 0, 0, width - states.shape[1])).float()

    def check(self, model, news=None) -> None:
        """`StaleCacheError` unless `model`'s frozen part (and `news`, when given) computed these states."""
        expected = frozen_fingerprint(model)
        if self.fingerprint != expected or self.num_layers != model.config.freeze_encoder_layers:
            raise StaleCacheError(
                f"frozen states of a frozen part with fingerprint {self.fingerprint} (k={self.num_layers}), but the "
                f"model's is {expected} (k={model.config.freeze_encoder_layers}): rebuild them with "
                "FrozenStateCache.from_model(model, news)"
            )
        if news is not None and _table_hash(_token_lists(news)) != self.news_table:
            raise StaleCacheError("frozen states of another news table (other titles or tokenizer): rebuild them")

    # ---- the file (one place: the package's vector format can take it over)

    def save(self, path: str | os.PathLike) -> None:
        metadata = {"format": _FORMAT, "fingerprint": self.fingerprint, "freeze_encoder_layers": str(self.num_layers),
                    "news_table": self.news_table}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        save_file({"states": self.states.contiguous(), "lengths": self.lengths}, os.fspath(path), metadata=metadata)

    @classmethod
    def load(cls, path: str | os.PathLike, model=None, news=None) -> FrozenStateCache:
        """Reads `save`'s file; with `model` (and `news`), refuses stale states (`check`)."""
        from safetensors import safe_open

        with safe_open(os.fspath(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        if metadata.get("format") != _FORMAT:
            raise ValueError(f"{path}: not a frozen-state file (metadata format {metadata.get('format')!r})")
        tensors = load_file(os.fspath(path))
        cache = cls(tensors["states"], tensors["lengths"], fingerprint=metadata["fingerprint"],
                    num_layers=int(metadata["freeze_encoder_layers"]), news_table=metadata["news_table"])
        if model is not None:
            cache.check(model, news)
        return cache

    @classmethod
    def load_or_build(cls, path: str | os.PathLike, model, news, **kwargs) -> FrozenStateCache:
        """The states of `path` when they are `model`'s for `news`; otherwise (no file, or a stale one, which is
        refused with a warning) computed with `from_model` and saved there."""
        if os.path.isfile(path):
            try:
                return cls.load(path, model, news)
            except StaleCacheError as error:
                logger.warning("%s refused (%s); computing the frozen states again", path, error)
        cache = cls.from_model(model, news, **kwargs)
        cache.save(path)
        return cache


@dataclass
class FrozenStateCollator:
    """An `MTRecCollator` whose batches also carry ``news_hidden_states (N, L, D)``: the cached states of the
    batch's news (rows of the collator's news table), padded like ``news_input_ids (N, L)``.

    The batch keeps ``news_rows (N,)`` only when `return_news_rows` is set (as `MTRecTrainer` sets it for its
    history cache). Every other attribute (``news``, ``set_epoch``, ...) is the wrapped collator's.
    """

    collator: Any
    cache: FrozenStateCache
    return_news_rows: bool | None = None

    def __post_init__(self) -> None:
        if self.return_news_rows is None:
            self.return_news_rows = self.collator.return_news_rows
        self.collator.return_news_rows = True  # the rows key the cache
        if len(self.collator.news) != len(self.cache):
            raise ValueError(f"the collator's news table has {len(self.collator.news)} rows, the cache {len(self.cache)}")

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.collator(features)
        rows = batch["news_rows"] if self.return_news_rows else batch.pop("news_rows")
        batch["news_hidden_states"] = self.cache.gather(rows, batch["news_input_ids"].shape[1])  # (N, L, D)
        return batch

    def __getattr__(self, name: str):
        if name in ("collator", "cache", "return_news_rows"):  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.collator, name)
