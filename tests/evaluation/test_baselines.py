"""The category-share baseline: scores worked out by hand, and the same impressions as the model's evaluation."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import Dataset

from modeling_mtrec import MTRecTrainer, MTRecTrainingArguments
from modeling_mtrec.evaluation import category_share_metrics, category_share_scores
from modeling_mtrec.models.mtrec.collator import MTRecCollator

pytestmark = pytest.mark.usefixtures("one_thread")


def test_scores_are_the_share_of_the_history_in_each_candidate_category():
    history = ["sports", "sports", "finance", "health"]
    scores = category_share_scores(history, ["finance", "sports", "travel", "sports"])
    np.testing.assert_array_equal(scores, [0.25, 0.5, 0.0, 0.5])
    np.testing.assert_array_equal(category_share_scores([], ["sports", "finance"]), [0.0, 0.0])


NEWS = Dataset.from_dict({"category": ["sports", "finance", "sports", "health", "finance"]})


def test_metrics_by_hand_with_ties_in_impression_order():
    impressions = Dataset.from_dict(
        {
            # user 1 read sports, sports, finance: health (row 3) 0, sports (2) 2/3, finance (4) 1/3; the click
            # ranks 2nd of 3: AUC 1/2 (above health, below sports), MRR 1/2.
            # users 2 and 3 have no history: all ties, ranked in impression order: the click listed first ranks
            # first (AUC 1, MRR 1), the click listed last ranks last (AUC 0, MRR 1/2).
            # user 4: every candidate clicked: no AUC, skipped and counted (as for the model).
            "history": [[0, 2, 1], [], [], [0]],
            "candidates": [[3, 2, 4], [1, 3], [3, 1], [1, 2]],
            "labels": [[0, 0, 1], [1, 0], [0, 1], [1, 1]],
        }
    )
    metrics = category_share_metrics(NEWS, impressions)
    assert metrics["auc"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert metrics["mrr"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert (metrics["num_impressions"], metrics["num_skipped_impressions"]) == (3, 1)


def test_max_history_length_keeps_the_most_recent_clicks_as_the_model():
    # history sports, sports, finance (oldest first); candidates sports (row 2, clicked) and finance (row 4)
    impressions = Dataset.from_dict({"history": [[0, 2, 1]], "candidates": [[2, 4]], "labels": [[1, 0]]})
    assert category_share_metrics(NEWS, impressions)["auc"] == 1.0  # 2/3 sports against 1/3 finance
    assert category_share_metrics(NEWS, impressions, max_history_length=1)["auc"] == 0.0  # finance only


def test_bad_input_is_named():
    impressions = Dataset.from_dict({"history": [[0, 9]], "candidates": [[2, 4]], "labels": [[1, 0]]})
    with pytest.raises(ValueError, match="history row 9 is out of range for 5 news"):
        category_share_metrics(NEWS, impressions)
    with pytest.raises(ValueError, match="missing \\['labels'\\]"):
        category_share_metrics(NEWS, impressions.remove_columns("labels"))


def test_scores_the_impressions_the_trainer_evaluates(setup, tmp_path):
    """The same rows, the same skip rule: an all-clicked impression added to the dev rows is skipped by both."""
    _, _, corpus, model = setup
    rows = corpus.eval.with_format(None).to_list()
    rows.append({**rows[0], "labels": [1] * len(rows[0]["labels"])})
    impressions = Dataset.from_list(rows, features=corpus.eval.features)
    args = MTRecTrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, disable_tqdm=True)
    trainer = MTRecTrainer(model=model, args=args, eval_dataset=impressions, data_collator=MTRecCollator(corpus.news))
    model_metrics = trainer.evaluate()
    baseline = category_share_metrics(corpus.news, impressions, max_history_length=model.config.max_history_length)
    assert baseline["num_impressions"] == model_metrics["eval_num_impressions"] == len(corpus.eval)
    assert baseline["num_skipped_impressions"] == model_metrics["eval_num_skipped_impressions"] == 1
    assert baseline["auc"] > 0.6  # the synthetic clicks follow planted favourite categories
