"""Right-padding of lists into rectangular tensors, and the label value that padding carries.

Every batch in the package is built from Python lists of unequal length (titles, histories, candidate lists,
BIO tags, multi-valued features); `pad_right` is the one place that turns them into a value tensor and a mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["IGNORE_INDEX", "pad_right"]

# Label of positions that no loss or metric may count (special tokens, padded candidates, unknown categories):
# torch's cross-entropy ignores it by default, and the metrics drop it.
IGNORE_INDEX = -100


def pad_right(
    sequences: Sequence[Sequence[int]],
    pad_value: int = 0,
    *,
    min_width: int = 0,
    width: int | None = None,
    dtype: torch.dtype = torch.long,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pads lists with `pad_value`. -> values (B, W) of `dtype`, mask (B, W) bool (True on real entries).

    W is `width` when given (a longer list raises), else the longest list, at least `min_width` (e.g. 1, so that
    an all-empty batch still has a column to gather from). The lists are padded in Python and converted once:
    one `torch.tensor` per row would cost more than the padding itself.

    >>> pad_right([[5, 6], [7]], pad_value=-1)
    (tensor([[ 5,  6],
            [ 7, -1]]), tensor([[ True,  True],
            [ True, False]]))
    """
    lengths = [len(sequence) for sequence in sequences]
    longest = max(lengths, default=0)
    if width is None:
        width = max(min_width, longest)
    elif longest > width:
        raise ValueError(f"a list of length {longest} does not fit in width {width}")
    values = torch.tensor(
        [list(sequence) + [pad_value] * (width - n) for sequence, n in zip(sequences, lengths)], dtype=dtype
    ).view(len(sequences), width)  # view keeps the shape when B or W is 0
    mask = torch.tensor([[True] * n + [False] * (width - n) for n in lengths], dtype=torch.bool).view(
        len(sequences), width
    )
    return values, mask
