"""Batches the two-tower retriever's samples: each distinct news once, plus the uniformly drawn SSL items."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ...data.padding import pad_right
from .features import ItemFeatures

__all__ = ["TwoTowerCollator"]


@dataclass
class TwoTowerCollator:
    """Pads retrieval samples into one de-duplicated batch and draws the SSL items.

    Distinct news (histories and clicks) are numbered in order of first appearance and their features sent once;
    ``history_index``/``positive_index`` point into them. ``ssl_batch_size`` more news are drawn uniformly from the
    whole corpus (not from clicks; Yao et al. Sec. 3.3) with a `torch.Generator` seeded with `seed`, and sent as
    ``ssl_*`` features; the model augments them. (With ``dataloader_num_workers > 0`` each worker holds a copy of
    the same generator.)

    Example (news rows 3 and 5 clicked by two users, ssl_batch_size=0):
        features = [{"user_key": 11, "history": [3], "positive": 5}, {"user_key": 12, "history": [], "positive": 5}]
        -> item rows [3, 5]: user_key (2,) = [11, 12], history_index = [[0], [0]], history_mask = [[True], [False]],
           positive_index = [1, 1], item_key (2,) ... word_keys (2, W)

    Args:
        items (`ItemFeatures`): features of every news row.
        ssl_batch_size (`int`, *optional*, defaults to 0): SSL items per batch; 0 sends none.
        item_log_q (`np.ndarray` of shape `(num_items,)`, *optional*): static log p_j, sent as ``item_log_q``.
        seed (`int`, *optional*, defaults to 0): seeds the SSL draws.
    """

    items: ItemFeatures
    ssl_batch_size: int = 0
    item_log_q: np.ndarray | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.ssl_batch_size < 0:
            raise ValueError(f"ssl_batch_size must be >= 0, got {self.ssl_batch_size}")
        if self.ssl_batch_size > len(self.items):
            raise ValueError(f"ssl_batch_size={self.ssl_batch_size} exceeds the {len(self.items)} items")
        if self.item_log_q is not None and len(self.item_log_q) != len(self.items):
            raise ValueError(f"item_log_q has {len(self.item_log_q)} entries for {len(self.items)} items")
        self.generator = torch.Generator().manual_seed(self.seed)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("TwoTowerCollator got an empty batch")
        rows: dict[int, int] = {}
        histories, positives = [], []
        for feature in features:
            histories.append([rows.setdefault(int(r), len(rows)) for r in feature["history"]])
            positives.append(rows.setdefault(int(feature["positive"]), len(rows)))
        item_rows = torch.tensor(list(rows), dtype=torch.long)
        history_index, history_mask = pad_right(histories, min_width=1)  # (B, H)
        batch = self.items.rows(item_rows)
        batch.update(
            user_key=torch.tensor([int(f["user_key"]) for f in features], dtype=torch.long),
            history_index=history_index,
            history_mask=history_mask,
            positive_index=torch.tensor(positives, dtype=torch.long),
        )
        if self.item_log_q is not None:
            batch["item_log_q"] = torch.as_tensor(self.item_log_q, dtype=torch.float32)[item_rows]
        if self.ssl_batch_size:
            # Without replacement: a duplicate would be a false negative of its own copy in the SSL softmax.
            ssl_rows = torch.randperm(len(self.items), generator=self.generator)[: self.ssl_batch_size]
            batch.update(self.items.rows(ssl_rows, prefix="ssl_"))
        return batch
