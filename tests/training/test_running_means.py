"""What every Trainer shares besides the surgery: the logged running means and the collator-epoch callback."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from modeling_mtrec.training.callbacks import CollatorEpochCallback
from modeling_mtrec.training.running_means import RunningMeans


def test_running_means_go_into_the_next_training_log_only():
    means = RunningMeans()
    means.add_losses(SimpleNamespace(main_loss=torch.tensor(1.0), ssl_loss=None), ("main_loss", "ssl_loss"))
    means.add_losses(SimpleNamespace(main_loss=torch.tensor(2.0), ssl_loss=torch.tensor(4.0)), ("main_loss", "ssl_loss"))
    means.add("grad_cosine", -0.5)
    evaluation_log = {"eval_auc": 0.6}
    means.flush_into(evaluation_log)  # not a training log: kept for the next one
    assert evaluation_log == {"eval_auc": 0.6}
    training_log = {"loss": 3.0}
    means.flush_into(training_log)
    assert training_log == {"loss": 3.0, "main_loss": 1.5, "ssl_loss": 4.0, "grad_cosine": -0.5}
    after = {"loss": 1.0}
    means.flush_into(after)  # emptied by the flush
    assert after == {"loss": 1.0}


def test_collator_epoch_callback_passes_the_epoch_being_trained():
    seen = []
    callback = CollatorEpochCallback(SimpleNamespace(set_epoch=seen.append))
    for epoch in (None, 0.0, 1.0, 1.5, 2.9999999):  # fractional on a mid-epoch resume; float noise near an integer
        callback.on_epoch_begin(None, SimpleNamespace(epoch=epoch), None)
    assert seen == [0, 0, 1, 1, 3]
