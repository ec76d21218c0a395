"""`training.multitask.MultiTaskTrainer` owns the per-task-gradient step: no other module takes per-task gradients."""

from __future__ import annotations

import re
from pathlib import Path

import modeling_mtrec
from modeling_mtrec import FoundationTrainer, MTRecTrainer, MultiTaskTrainer, TwoTowerTrainer
from modeling_mtrec.training.base import BaseTrainer


def test_the_per_task_gradient_step_is_written_once():
    package = Path(modeling_mtrec.__file__).resolve().parent
    calls = {
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if re.search(r"autograd\.grad\(", path.read_text(encoding="utf-8"))
    }
    assert calls == {"training/multitask.py"}


def test_the_trainers_share_one_base():
    assert issubclass(MTRecTrainer, MultiTaskTrainer) and issubclass(FoundationTrainer, MultiTaskTrainer)
    assert issubclass(TwoTowerTrainer, BaseTrainer) and not issubclass(TwoTowerTrainer, MultiTaskTrainer)
    for trainer in (MTRecTrainer, FoundationTrainer, TwoTowerTrainer):  # the step is not overridden again
        assert "training_step" not in vars(trainer)
