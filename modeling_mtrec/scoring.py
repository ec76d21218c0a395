"""The one scoring interface every model offers, and the routines written once against it.

Every model of the package (MTRec, the two-tower retriever, and any model added later) offers:

    encode_items(**item_inputs)                             -> (N, D)  item (news) vectors
    encode_users(history_embeds (B, H, D),
                 history_mask (B, H) | None = None,
                 **user_inputs)                             -> (B, D)  user vectors from clicked-item vectors
    score(user_embeds (B, D), item_embeds (B, C, D) | (C, D)) -> (B, C)
    get_item_encoder()                                      -> the module an item vector depends on
    vector_size                                             -> D

`user_inputs` are whatever else a model's user encoder reads (the two-tower's `user_key`; nothing for MTRec).
Because an item vector does not depend on the user, every item can be encoded ONCE and reused by every
impression that mentions it; the routines below work on such a table of item vectors: `encode_item_batches`
builds it, `encode_users_from_vectors` and `score_impressions` read it. Evaluation (`modeling_mtrec.evaluation`)
and serving (`modeling_mtrec.serving`) are built on them, so they are written once for every model.

Every routine runs the model in eval mode (no dropout) under `no_grad` and restores its previous mode
afterwards (`eval_mode`): the Trainer may call them mid-training.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from .data.padding import pad_right

__all__ = [
    "ScoringModel",
    "encode_item_batches",
    "encode_users_from_vectors",
    "eval_mode",
    "model_device",
    "score_impressions",
]


@runtime_checkable
class ScoringModel(Protocol):
    """What evaluation and serving need from a model (see the module docstring)."""

    @property
    def vector_size(self) -> int: ...

    def get_item_encoder(self) -> torch.nn.Module: ...

    def encode_items(self, **item_inputs: torch.Tensor) -> torch.Tensor: ...

    def encode_users(
        self, history_embeds: torch.Tensor, history_mask: torch.Tensor | None = None, **user_inputs: torch.Tensor
    ) -> torch.Tensor: ...

    def score(self, user_embeds: torch.Tensor, item_embeds: torch.Tensor) -> torch.Tensor: ...


@contextlib.contextmanager
def eval_mode(*models: torch.nn.Module) -> Iterator[None]:
    """Puts the models in eval mode for a block and restores each one's previous mode, even on an exception."""
    modes = [model.training for model in models]
    for model in models:
        model.eval()
    try:
        yield
    finally:
        for model, training in zip(models, modes):
            model.train(training)


def model_device(model: torch.nn.Module, device: str | torch.device | None = None) -> torch.device:
    """`device` if given, else where the model's parameters are."""
    return torch.device(device) if device is not None else next(model.parameters()).device


@torch.no_grad()
def encode_item_batches(
    model: ScoringModel,
    batches: Iterable[tuple[Sequence[int], Mapping[str, torch.Tensor]]],
    num_items: int,
    *,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """The item-vector table (num_items, D), float32 on CPU, from `(rows, encode_items inputs)` batches.

    Each batch's vectors go to its `rows` of the table, so batches may come in any order (e.g. sorted by title
    length, see `processing_mtrec.title_batches`); `ItemFeatures.batches` gives the two-tower's.
    """
    device = model_device(model, device)
    table = torch.zeros(num_items, model.vector_size, dtype=torch.float32)  # (N, D)
    with eval_mode(model):
        for rows, inputs in batches:
            vectors = model.encode_items(**{name: value.to(device) for name, value in inputs.items()})  # (b, D)
            table[torch.as_tensor(rows, dtype=torch.long)] = vectors.float().cpu()
    return table


def _user_batches(
    model: ScoringModel,
    vectors: torch.Tensor,
    histories: Sequence[Sequence[int]],
    user_inputs: Mapping[str, Sequence[Any]] | None,
    batch_size: int,
    device: torch.device,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(start, vector table on `device`, user vectors (b, D)) per batch of `batch_size` histories."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    # An empty table (no item encoded yet) still needs a row for the masked padding of empty histories to gather.
    table = (vectors if len(vectors) else torch.zeros(1, vectors.shape[1])).to(device)  # (N, D)
    for start in range(0, len(histories), batch_size):
        stop = start + batch_size
        # Padding has zero weight in every user encoder (masked), so the batch's widths do not change a vector.
        history_index, history_mask = pad_right(histories[start:stop], min_width=1)  # (b, H)
        extra = {name: torch.as_tensor(values[start:stop], device=device) for name, values in (user_inputs or {}).items()}
        history = table[history_index.to(device)].to(model.dtype)  # (b, H, D)
        yield start, table, model.encode_users(history, history_mask.to(device), **extra)  # (b, D)


@torch.no_grad()
def encode_users_from_vectors(
    model: ScoringModel,
    vectors: torch.Tensor,
    histories: Sequence[Sequence[int]],
    *,
    user_inputs: Mapping[str, Sequence[Any]] | None = None,
    batch_size: int = 1024,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """User vectors (B, D), float32 on CPU, from each user's clicked rows of the item-vector table `vectors` (N, D).

    `user_inputs` holds the model's other user inputs, one value per user (e.g. ``{"user_key": [...]}``).
    """
    device = model_device(model, device)
    out = torch.zeros(len(histories), model.vector_size, dtype=torch.float32)  # (B, D)
    with eval_mode(model):
        for start, _, users in _user_batches(model, vectors, histories, user_inputs, batch_size, device):
            out[start : start + len(users)] = users.float().cpu()
    return out


@torch.no_grad()
def score_impressions(
    model: ScoringModel,
    vectors: torch.Tensor,
    histories: Sequence[Sequence[int]],
    candidates: Sequence[Sequence[int]],
    *,
    user_inputs: Mapping[str, Sequence[Any]] | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> list[np.ndarray]:
    """The model's scores of each impression's candidates, from the item-vector table `vectors` (N, D).

    `histories` and `candidates` hold rows of `vectors` per impression. Impressions are scored `batch_size` at a
    time: histories and candidates padded to the batch's longest, user vectors from the model's `encode_users`
    (padding masked), scores from its `score`; nothing loops per candidate. Returns one float32 array per
    impression, in candidate order.
    """
    if len(histories) != len(candidates):
        raise ValueError(f"got {len(histories)} histories but {len(candidates)} candidate lists")
    device = model_device(model, device)
    scores: list[np.ndarray] = []
    with eval_mode(model):
        for start, table, users in _user_batches(model, vectors, histories, user_inputs, batch_size, device):
            rows = candidates[start : start + len(users)]
            candidate_index, _ = pad_right(rows, min_width=1)  # (b, C)
            logits = model.score(users, table[candidate_index.to(device)].to(model.dtype))  # (b, C)
            logits = logits.float().cpu().numpy()
            scores.extend(logits[b, : len(row)].copy() for b, row in enumerate(rows))
    return scores
