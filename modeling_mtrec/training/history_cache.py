"""A cache of recently encoded news vectors, reused at history positions (SpeedyFeed's cache).

Xiao et al., "Training Large-Scale News Recommenders with Pretrained Language Models in the Loop", KDD 2022,
Sec. 4.2: most of a batch's titles are clicked news in users' histories, and a news seen a few steps ago has
barely moved since; reusing its vector, without gradient, saves most of the encoder's work. The vectors that
get a gradient are those of the candidates (always encoded) and of history news not seen recently.

`HistoryVectorCache` is a plain object over news-table rows: `lookup(rows, step)` returns the stored vectors and
which of them are fresh enough (produced at an optimizer step s with 0 <= step - s <= max_age_steps);
`update(rows, vectors, step)` stores new ones. Its state is two tensors, saved with a checkpoint so a resumed run
reuses exactly what the uninterrupted run would have. Under DDP every process keeps the cache of the vectors it
encoded itself (the documented rule: no communication, and a process never waits for another's vectors).
"""

from __future__ import annotations

import torch

__all__ = ["HistoryVectorCache"]

_NEVER = -(2**62)  # production step of a row never encoded: too old for any max_age_steps


class HistoryVectorCache:
    """News vectors by news-table row, with the optimizer step that produced each.

    >>> cache = HistoryVectorCache(max_age_steps=2)
    >>> cache.update(torch.tensor([4, 1]), torch.ones(2, 3), step=10)
    >>> vectors, hit = cache.lookup(torch.tensor([1, 2, 4]), step=12)
    >>> hit.tolist(), vectors[0].tolist()
    ([True, False, True], [1.0, 1.0, 1.0])
    >>> cache.lookup(torch.tensor([1]), step=13)[1].tolist()  # produced 3 steps ago: too old
    [False]
    """

    def __init__(self, max_age_steps: int) -> None:
        if not isinstance(max_age_steps, int) or max_age_steps < 1:
            raise ValueError(f"max_age_steps must be a positive integer, got {max_age_steps!r}")
        self.max_age_steps = max_age_steps
        self.vectors: torch.Tensor | None = None  # (capacity, D), float32
        self.steps: torch.Tensor | None = None  # (capacity,), int64 step of production, _NEVER if none

    def __len__(self) -> int:
        return 0 if self.steps is None else int((self.steps != _NEVER).sum())

    def _ensure(self, max_row: int, dim: int, device: torch.device) -> None:
        """Grows the tables (doubling) so that row `max_row` exists."""
        capacity = 0 if self.steps is None else self.steps.shape[0]
        if self.vectors is not None and self.vectors.shape[1] != dim:
            raise ValueError(f"cached vectors have width {self.vectors.shape[1]}, got vectors of width {dim}")
        if max_row < capacity:
            return
        new_capacity = max(max_row + 1, 2 * capacity, 1024)
        vectors = torch.zeros(new_capacity, dim, device=device)
        steps = torch.full((new_capacity,), _NEVER, dtype=torch.long, device=device)
        if capacity:
            vectors[:capacity], steps[:capacity] = self.vectors, self.steps
        self.vectors, self.steps = vectors, steps

    def lookup(self, rows: torch.Tensor, step: int) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(vectors (N, D) or None when empty, hit (N,) bool) for news-table `rows` (N,) at optimizer `step`."""
        if self.steps is None:
            return None, torch.zeros(rows.shape, dtype=torch.bool, device=rows.device)
        rows = rows.to(self.steps.device)
        known = rows < self.steps.shape[0]
        safe = torch.where(known, rows, torch.zeros_like(rows))
        age = step - self.steps[safe]  # (N,)
        hit = known & (age >= 0) & (age <= self.max_age_steps)
        return self.vectors[safe], hit

    def update(self, rows: torch.Tensor, vectors: torch.Tensor, step: int) -> None:
        """Stores `vectors` (F, D) for news-table `rows` (F,), produced at optimizer `step` (no gradient kept)."""
        if rows.numel() == 0:
            return
        self._ensure(int(rows.max()), vectors.shape[-1], vectors.device)
        rows = rows.to(self.steps.device)
        self.vectors[rows] = vectors.detach().to(self.vectors.dtype)
        self.steps[rows] = step

    def state_dict(self) -> dict[str, torch.Tensor]:
        if self.steps is None:
            return {}
        return {"vectors": self.vectors.cpu(), "steps": self.steps.cpu()}

    def load_state_dict(self, state: dict[str, torch.Tensor], device: torch.device | str | None = None) -> None:
        if not state:
            self.vectors = self.steps = None
            return
        self.vectors, self.steps = state["vectors"].to(device), state["steps"].to(device)
