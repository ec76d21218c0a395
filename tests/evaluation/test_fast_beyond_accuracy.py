"""`fast_evaluate(..., beyond_accuracy_k=k)`: the accuracy metrics unchanged, plus the beyond-accuracy metrics of the
top-k computed from the same scores and news vectors; without it, the output is what it always was."""

from __future__ import annotations

import numpy as np
import pytest

from modeling_mtrec import MTRecTrainer, MTRecTrainingArguments
from modeling_mtrec.evaluation.beyond_accuracy import beyond_accuracy_metrics, top_k
from modeling_mtrec.evaluation.impressions import encode_item_table, fast_evaluate, impression_scores
from modeling_mtrec.models.mtrec.collator import MTRecCollator

pytestmark = pytest.mark.usefixtures("one_thread")


def test_beyond_accuracy_in_fast_evaluate(setup):
    _, _, corpus, model = setup
    plain = fast_evaluate(model, corpus.news, corpus.eval)
    assert set(plain) == {"auc", "mrr", "ndcg@5", "ndcg@10", "num_impressions", "num_skipped_impressions"}
    popularity = np.full(len(corpus.news), 0.5)
    both = fast_evaluate(model, corpus.news, corpus.eval, beyond_accuracy_k=3, popularity=popularity)
    assert {k: both[k] for k in plain} == plain  # the accuracy metrics do not move
    scores = impression_scores(model, corpus.news, corpus.eval)
    rows = corpus.eval[:]
    expected = beyond_accuracy_metrics(
        rows["candidates"], scores, 3, histories=rows["history"], categories=corpus.news["category"],
        vectors=encode_item_table(model, corpus.news).float().numpy(), popularity=popularity,
    )
    assert set(expected) == {"ild_category@3", "ild_vector@3", "novelty_category@3", "novelty_vector@3",
                             "novelty_popularity@3", "coverage_items@3", "coverage_categories@3"}
    assert {k: both[k] for k in expected} == pytest.approx(expected, rel=1e-6)
    # By hand: every top-3 of a p = 0.5 catalog has popularity novelty -log2(0.5) = 1; the item coverage is the
    # share of the offered news that some top-3 holds.
    assert both["novelty_popularity@3"] == pytest.approx(1.0)
    tops = {int(c) for cands, s in zip(rows["candidates"], scores) for c in np.asarray(cands)[top_k(s, 3)]}
    offered = {int(c) for cands in rows["candidates"] for c in cands}
    assert both["coverage_items@3"] == pytest.approx(len(tops) / len(offered))
    with pytest.raises(ValueError, match="beyond_accuracy_k"):
        fast_evaluate(model, corpus.news, corpus.eval, beyond_accuracy_k=0)


def test_trainer_reports_them_with_beyond_accuracy_k(setup, tmp_path):
    _, tokenizer, corpus, model = setup
    args = MTRecTrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, disable_tqdm=True,
                                  beyond_accuracy_k=5)
    trainer = MTRecTrainer(model=model, args=args, eval_dataset=corpus.eval,
                           data_collator=MTRecCollator(corpus.news, pad_token_id=tokenizer.pad_token_id))
    metrics = trainer.evaluate()
    assert metrics["eval_ild_vector@5"] == pytest.approx(
        fast_evaluate(model, corpus.news, corpus.eval, beyond_accuracy_k=5)["ild_vector@5"], rel=1e-6)
