"""The one right-padding of lists into (values, mask) tensors."""

from __future__ import annotations

import doctest

import pytest
import torch

import modeling_mtrec.data.padding as padding
from modeling_mtrec.data.padding import IGNORE_INDEX, pad_right


def test_docstring_example_is_exact():
    assert doctest.testmod(padding).failed == 0


def test_pad_right_values_mask_and_widths():
    values, mask = pad_right([[3, 1], [], [7]], IGNORE_INDEX)
    assert values.tolist() == [[3, 1], [-100, -100], [7, -100]]
    assert mask.tolist() == [[True, True], [False, False], [True, False]]
    assert values.dtype == torch.long and mask.dtype == torch.bool
    assert pad_right([[], []], min_width=1)[0].shape == (2, 1)  # an all-empty batch keeps one column
    assert pad_right([], min_width=1)[0].shape == (0, 1)
    assert pad_right([[1]], width=3)[0].tolist() == [[1, 0, 0]]
    assert pad_right([(0.5,)], dtype=torch.float32)[0].dtype == torch.float32
    with pytest.raises(ValueError, match="width 1"):
        pad_right([[1, 2]], width=1)
