"""Scoring shared by evaluation and serving: user vectors and click scores from a table of item vectors.

Every model offers `encode_user` and `score`; the routines here batch impressions (histories and candidates as
rows of a vector table), run the model in eval mode and restore its previous mode afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__: list[str] = []


class _EvalMode:
    """Puts a model in eval mode for a block and restores its previous mode (the Trainer may be mid-training)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model, self.was_training = model, model.training

    def __enter__(self) -> None:
        self.model.eval()

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)


def _model_device(model: torch.nn.Module, device: str | torch.device | None) -> torch.device:
    return torch.device(device) if device is not None else next(model.parameters()).device


def _pad_rows(rows: Sequence[Sequence[int]], min_width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pads lists of row numbers with 0 / mask False. -> index (B, W), mask (B, W)."""
    width = max(min_width, max((len(r) for r in rows), default=0))
    index = torch.zeros(len(rows), width, dtype=torch.long)  # (B, W)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)  # (B, W)
    for b, r in enumerate(rows):
        if r:
            index[b, : len(r)] = torch.as_tensor(r, dtype=torch.long)
            mask[b, : len(r)] = True
    return index, mask


@torch.no_grad()
def _score_rows(
    model: torch.nn.Module,
    vectors: torch.Tensor,
    histories: Sequence[Sequence[int]],
    candidates: Sequence[Sequence[int]],
    batch_size: int,
    device: torch.device,
) -> list[np.ndarray]:
    """Click scores of each impression's candidates from cached vectors; one float32 array per impression.

    Impressions are scored `batch_size` at a time: histories and candidates padded to the batch's longest,
    user vectors from the model's `encode_user` (masked: padding has zero attention weight), scores from
    `score`. Nothing loops per candidate.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    table = vectors.to(device)  # (N, D)
    scores: list[np.ndarray] = []
    with _EvalMode(model):
        for start in range(0, len(histories), batch_size):
            history_index, history_mask = _pad_rows(histories[start : start + batch_size], min_width=1)  # (B, H)
            candidate_index, _ = _pad_rows(candidates[start : start + batch_size], min_width=1)  # (B, C)
            history = table[history_index.to(device)].to(model.dtype)  # (B, H, D)
            user = model.encode_user(history, history_mask.to(device))  # (B, H, D) -> (B, D)
            logits = model.score(user, table[candidate_index.to(device)].to(model.dtype))  # (B, C, D).(B, D) -> (B, C)
            logits = logits.float().cpu().numpy()
            for b, row in enumerate(candidates[start : start + batch_size]):
                scores.append(logits[b, : len(row)].copy())
    return scores
