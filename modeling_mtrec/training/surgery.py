"""Gradient surgery between a main task and an auxiliary one, as a plain object over per-task gradients.

MTRec (Bi et al., Findings of ACL 2022, Sec. 3.3). Over the parameters that the main and the auxiliary losses
share (MTRec: the BERT news encoder), flattened together:

    g_main = ∇L_main,   g_aux = λ ∇(L_category + L_ner)
    if g_aux · g_main < 0:   g_aux ← g_aux − (g_aux · g_main / ‖g_main‖²) g_main
    update = g_main + g_aux

The auxiliary tasks serve the main one, so only the auxiliary gradient is projected; the main gradient is never
modified. Parameters reached by one side only take that side's gradient. Modes: `mtrec` (above), `pcgrad`
(symmetric PCGrad, Yu et al. 2020: each of g_main and g_aux projected off the other when they conflict), `none`
(plain g_main + g_aux, the ablation).

Nothing here knows about a Trainer: `GradientSurgery.combine` takes the two tasks' per-parameter gradients (as
autograd returns them, `None` where a task does not reach a parameter) and returns the update per parameter, so
any model with a main and an auxiliary loss can use it. `accumulate` and `all_reduce_mean` are the two steps a
Trainer needs around it to stay exact across gradient accumulation and DDP (see `training.multitask`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from accelerate.utils import DistributedType

__all__ = [
    "SURGERY_MODES",
    "GradientSurgery",
    "SurgeryStats",
    "accumulate",
    "all_reduce_mean",
    "check_surgery_supported",
    "project_conflicting",
    "supports_whole_gradients",
]

SURGERY_MODES = ("mtrec", "pcgrad", "none")
# Set-ups where the per-task gradients are full, replicated tensors that the hand-written all-reduce can average.
_SUPPORTED_DISTRIBUTED = (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)

Gradients = Sequence[torch.Tensor | None]


def project_conflicting(
    g_main: torch.Tensor, g_aux: torch.Tensor, mode: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Applies the surgery to two flat gradients of the shared parameters.

    Returns (g_main', g_aux', dot, cosine) where dot and cosine are taken before any projection. A zero or
    non-finite gradient leaves both untouched (nothing to project onto, or a step the scaler will skip).
    """
    dot = torch.dot(g_main, g_aux)
    main_sq, aux_sq = torch.dot(g_main, g_main), torch.dot(g_aux, g_aux)
    cosine = dot / (main_sq.sqrt() * aux_sq.sqrt()).clamp(min=torch.finfo(dot.dtype).tiny)
    conflict = bool(dot < 0) and bool(torch.isfinite(dot))
    if mode == "none" or not conflict:
        return g_main, g_aux, dot, cosine
    new_aux = g_aux - (dot / main_sq) * g_main if main_sq > 0 else g_aux
    if mode == "mtrec":
        return g_main, new_aux, dot, cosine
    new_main = g_main - (dot / aux_sq) * g_aux if aux_sq > 0 else g_main  # pcgrad: symmetric
    return new_main, new_aux, dot, cosine


@dataclass(frozen=True)
class SurgeryStats:
    """What one projection saw, before projecting: the dot product and cosine of g_main and g_aux."""

    dot: float
    cosine: float

    @property
    def conflict(self) -> bool:
        return self.dot < 0


class GradientSurgery:
    """`mode` in `SURGERY_MODES`; see the module docstring.

    >>> surgery = GradientSurgery("mtrec")
    >>> update, stats = surgery.combine([torch.tensor([1.0, 0.0])], [torch.tensor([-1.0, 1.0])])
    >>> update[0], stats.conflict
    (tensor([1., 1.]), True)
    """

    def __init__(self, mode: str = "mtrec") -> None:
        if mode not in SURGERY_MODES:
            raise ValueError(f"gradient surgery mode must be one of {SURGERY_MODES}, got {mode!r}")
        self.mode = mode

    def __repr__(self) -> str:
        return f"GradientSurgery({self.mode!r})"

    def project(self, g_main: torch.Tensor, g_aux: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, SurgeryStats]:
        """Two flat gradients (P,) -> (g_main', g_aux', stats before projecting)."""
        new_main, new_aux, dot, cosine = project_conflicting(g_main, g_aux, self.mode)
        return new_main, new_aux, SurgeryStats(dot.item(), cosine.item())

    def combine(self, main: Gradients, aux: Gradients) -> tuple[list[torch.Tensor | None], SurgeryStats | None]:
        """The update of every parameter from the two tasks' per-parameter gradients.

        Parameters both tasks reach are flattened together (in float32) and projected once; the others keep their
        one task's gradient. Returns the per-parameter updates (`None` where neither task reaches a parameter)
        and the projection's stats (`None` when no parameter is shared, or when the dot product is not finite:
        an fp16 step the GradScaler will skip).
        """
        if len(main) != len(aux):
            raise ValueError(f"got gradients of {len(main)} parameters for the main task, {len(aux)} for the auxiliary")
        shared = [i for i, (m, a) in enumerate(zip(main, aux)) if m is not None and a is not None]
        # One side's gradient where one side reaches a parameter; the shared ones are filled from the projection below.
        update = [m if a is None else a for m, a in zip(main, aux)]
        if not shared:
            return update, None
        flat_main = torch.cat([main[i].reshape(-1) for i in shared]).float()
        flat_aux = torch.cat([aux[i].reshape(-1) for i in shared]).float()
        new_main, new_aux, stats = self.project(flat_main, flat_aux)
        for i, flat in zip(shared, (new_main + new_aux).split([main[i].numel() for i in shared])):
            update[i] = flat.view_as(main[i]).to(main[i].dtype)
        return update, (stats if math.isfinite(stats.dot) else None)


def accumulate(total: list[torch.Tensor | None] | None, grads: Gradients) -> list[torch.Tensor | None]:
    """Sums per-parameter gradients over the micro-batches of one optimizer step (`None` = not reached yet)."""
    if total is None:
        return list(grads)
    return [g if t is None else (t if g is None else t + g) for t, g in zip(total, grads)]


def all_reduce_mean(grads: Gradients, params: Sequence[torch.Tensor], num_processes: int) -> list[torch.Tensor | None]:
    """Averages one task's gradients over the processes in one flat buffer (a missing gradient counts as 0)."""
    present = torch.tensor([g is not None for g in grads], device=params[0].device, dtype=torch.int32)
    torch.distributed.all_reduce(present)  # a parameter one process did not reach may be reached by another
    kept = [i for i, n in enumerate(present.tolist()) if n > 0]
    if not kept:
        return [None] * len(grads)
    flat = torch.cat(
        [(grads[i] if grads[i] is not None else torch.zeros_like(params[i])).reshape(-1).float() for i in kept]
    )
    torch.distributed.all_reduce(flat)
    flat /= num_processes
    out: list[torch.Tensor | None] = [None] * len(grads)
    for i, chunk in zip(kept, flat.split([params[i].numel() for i in kept])):
        out[i] = chunk.view_as(params[i]).to(params[i].dtype)
    return out


def check_surgery_supported(distributed_type: DistributedType, mode: str) -> None:
    """Refuses set-ups where the hand-written all-reduce would not see whole gradients (never a silent wrong step)."""
    if mode != "none" and distributed_type not in _SUPPORTED_DISTRIBUTED:
        raise ValueError(
            f"gradient_surgery={mode!r} supports {[t.value for t in _SUPPORTED_DISTRIBUTED]} (single process and "
            f"DDP on CPU or GPU), not {distributed_type.value}: FSDP and DeepSpeed shard the gradients, so the "
            "projection would use per-shard dot products. Use DDP, or gradient_surgery='none'."
        )


def supports_whole_gradients(distributed_type: DistributedType) -> bool:
    """Whether each process holds whole (unsharded) parameters and gradients: no FSDP, no DeepSpeed."""
    return distributed_type in _SUPPORTED_DISTRIBUTED
