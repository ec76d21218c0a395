"""Gradient surgery as a plain object: the projection by hand, degenerate gradients, unsupported set-ups."""

from __future__ import annotations

import pytest
import torch
from accelerate.utils import DistributedType

from modeling_mtrec.training.surgery import (
    check_surgery_supported,
    project_conflicting,
)


def test_project_conflicting_by_hand():
    m = torch.tensor([1.0, 0.0])
    a = torch.tensor([-1.0, 1.0])  # a . m = -1 < 0
    new_m, new_a, dot, cos = project_conflicting(m, a, "mtrec")
    assert dot.item() == -1.0 and cos.item() == pytest.approx(-1 / 2**0.5)
    torch.testing.assert_close(new_m, m)
    torch.testing.assert_close(new_a, torch.tensor([0.0, 1.0]))  # a - (-1/1) m
    new_m, new_a, _, _ = project_conflicting(m, a, "pcgrad")
    torch.testing.assert_close(new_a, torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(new_m, torch.tensor([0.5, 0.5]))  # m - (-1/2) a
    same_m, same_a, _, _ = project_conflicting(m, torch.tensor([1.0, 1.0]), "mtrec")  # no conflict
    torch.testing.assert_close(same_a, torch.tensor([1.0, 1.0]))

@pytest.mark.parametrize("mode", ["mtrec", "pcgrad"])
def test_zero_and_non_finite_gradients_do_not_crash(mode):
    zero = torch.zeros(3)
    a = torch.tensor([-1.0, 2.0, 0.5])
    for m in (zero, torch.tensor([float("nan"), 1.0, 0.0]), torch.tensor([float("inf"), 1.0, 0.0])):
        new_m, new_a, _, _ = project_conflicting(m, a, mode)
        assert new_m is m and new_a is a  # untouched: nothing to project on, or a step the scaler skips

def test_surgery_refuses_sharded_setups():
    for sharded in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        with pytest.raises(ValueError, match="FSDP and DeepSpeed shard the gradients"):
            check_surgery_supported(sharded, "mtrec")
        check_surgery_supported(sharded, "none")  # the plain sum needs no whole gradients
    for supported in (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU):
        check_surgery_supported(supported, "pcgrad")
