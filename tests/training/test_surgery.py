"""Gradient surgery as a plain object: the projection by hand, degenerate gradients, unsupported set-ups."""

from __future__ import annotations

import pytest
import torch
from accelerate.utils import DistributedType

from modeling_mtrec.training.surgery import (
    GradientSurgery,
    SurgeryStats,
    accumulate,
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


# --------------------------------------------------------------------------------------- GradientSurgery


def test_gradient_surgery_rejects_unknown_modes():
    with pytest.raises(ValueError, match="cagrad"):
        GradientSurgery("cagrad")


def test_combine_projects_the_shared_parameters_together_and_keeps_the_others():
    # Parameter 0 and 1 are shared, 2 is reached by the main task only, 3 by the auxiliary one only, 4 by none.
    main = [torch.tensor([1.0, 0.0]), torch.tensor([0.0]), torch.tensor([5.0]), None, None]
    aux = [torch.tensor([-1.0, 1.0]), torch.tensor([2.0]), None, torch.tensor([7.0, 8.0]), None]
    update, stats = GradientSurgery("mtrec").combine(main, aux)
    # Flattened shared gradients: g_main = (1, 0, 0), g_aux = (-1, 1, 2); dot = -1 < 0, |g_main|^2 = 1, so
    # g_aux' = g_aux + g_main = (0, 1, 2) and the update is g_main + g_aux' = (1, 1, 2).
    assert stats == SurgeryStats(dot=-1.0, cosine=pytest.approx(-1 / 6**0.5)) and stats.conflict
    torch.testing.assert_close(update[0], torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(update[1], torch.tensor([2.0]))
    torch.testing.assert_close(update[2], torch.tensor([5.0]))
    torch.testing.assert_close(update[3], torch.tensor([7.0, 8.0]))
    assert update[4] is None


@pytest.mark.parametrize("mode, expected", [("none", [0.0, 1.0, 2.0]), ("mtrec", [1.0, 1.0, 2.0]), ("pcgrad", [5 / 6, 7 / 6, 7 / 3])])
def test_combine_by_mode(mode, expected):
    main, aux = [torch.tensor([1.0, 0.0, 0.0])], [torch.tensor([-1.0, 1.0, 2.0])]
    update, stats = GradientSurgery(mode).combine(main, aux)
    # pcgrad also projects g_main off g_aux: g_main' = g_main - (-1 / 6) g_aux = (5/6, 1/6, 1/3).
    torch.testing.assert_close(update[0], torch.tensor(expected))
    assert stats.conflict  # the stats are those before projecting, whatever the mode


def test_combine_without_conflict_is_the_plain_sum():
    main, aux = [torch.tensor([1.0, 2.0])], [torch.tensor([3.0, -1.0])]  # dot = 1 > 0
    update, stats = GradientSurgery("mtrec").combine(main, aux)
    torch.testing.assert_close(update[0], torch.tensor([4.0, 1.0]))
    assert not stats.conflict and stats.cosine == pytest.approx(1 / (5**0.5 * 10**0.5))


def test_combine_keeps_dtype_and_reports_no_stats_without_shared_or_finite_gradients():
    main = [torch.tensor([1.0, -2.0], dtype=torch.bfloat16)]
    update, _ = GradientSurgery("mtrec").combine(main, [torch.tensor([1.0, 1.0], dtype=torch.bfloat16)])
    assert update[0].dtype == torch.bfloat16
    assert GradientSurgery("mtrec").combine([torch.ones(2)], [None])[1] is None  # nothing shared
    inf = torch.tensor([float("inf"), 1.0])
    update, stats = GradientSurgery("mtrec").combine([inf], [torch.tensor([-1.0, 1.0])])
    assert stats is None  # an overflowing fp16 step: left for the GradScaler to skip
    with pytest.raises(ValueError, match="parameters"):
        GradientSurgery("mtrec").combine([None], [None, None])


def test_accumulate_sums_micro_batches_with_missing_gradients():
    total = accumulate(None, [torch.tensor([1.0]), None, None])
    total = accumulate(total, [torch.tensor([2.0]), torch.tensor([3.0]), None])
    assert total[0].item() == 3.0 and total[1].item() == 3.0 and total[2] is None
