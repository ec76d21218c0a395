"""Fast evaluation, the news vector cache, MIND prediction files and the recommender API (modeling_mtrec.inference)."""

from __future__ import annotations

import logging
import re
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_config
from transformers import BertConfig

from modeling_mtrec import MTRecModel, MTRecTrainer, MTRecTrainingArguments
from modeling_mtrec.data import (
    LoadStats,
    MTRecCollator,
    generate_synthetic_mind,
    load_mind,
    read_behaviors,
    synthetic_tokenizer,
)
from modeling_mtrec.evaluation.fast import fast_evaluate
from modeling_mtrec.evaluation.leaderboard import (
    predict_ranks,
    ranks_from_scores,
    write_mind_predictions,
    write_prediction_file,
)
from modeling_mtrec.serving.cache import NewsVectorCache, StaleCacheError, encode_titles
from modeling_mtrec.serving.recommender import MTRecRecommender, NewsTitle

ROOT = Path(__file__).resolve().parents[1]
TITLE_LENGTH = 16
METRICS = ("auc", "mrr", "ndcg@5", "ndcg@10", "num_impressions", "num_skipped_impressions")


def synthetic_model(tokenizer, category2id: dict[str, int]) -> MTRecModel:
    """A tiny random MTRec over the synthetic tokenizer.

    initializer_range 0.3 instead of BERT's 0.02: at 0.02 a random BERT maps every title to nearly the same [CLS]
    vector, scores then differ by ~1e-5 and both paths' rankings are decided by float rounding, which is no test
    of either.
    """
    torch.manual_seed(0)
    encoder = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=32, initializer_range=0.3,
    )
    config = tiny_config(
        encoder_config=encoder, id2category={i: c for c, i in category2id.items()}, max_title_length=TITLE_LENGTH,
        initializer_range=0.3,
    )
    return MTRecModel(config).eval()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a loaded 2-core machine two spinning threads made a
    50 ms test take 11 s; the previous setting is restored for the other test modules."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Small synthetic corpus (40 dev impressions, 180 news, some empty histories) and a tiny model."""
    folder = tmp_path_factory.mktemp("synthetic")
    dirs = generate_synthetic_mind(str(folder), seed=0, num_news=150, num_users=20, num_dev_news=30, num_dev_users=40)
    tokenizer = synthetic_tokenizer()
    corpus = load_mind(tokenizer, train_dir=dirs["train"], eval_dir=dirs["dev"], max_title_length=TITLE_LENGTH)
    return dirs, tokenizer, corpus, synthetic_model(tokenizer, corpus.category2id)


def trainer_for(model, corpus, tokenizer, tmp_path, fast: bool) -> MTRecTrainer:
    args = MTRecTrainingArguments(
        output_dir=str(tmp_path), report_to=[], use_cpu=True, per_device_eval_batch_size=16, fast_eval=fast,
        disable_tqdm=True,
    )
    collator = MTRecCollator(corpus.news, pad_token_id=tokenizer.pad_token_id)
    return MTRecTrainer(model=model, args=args, eval_dataset=corpus.eval, data_collator=collator)


# ------------------------------------------------------------------------------------------ fast evaluation


def test_fast_evaluate_equals_slow_path(setup, tmp_path):
    _, tokenizer, corpus, model = setup
    slow = trainer_for(model, corpus, tokenizer, tmp_path, fast=False).evaluate()
    trainer = trainer_for(model, corpus, tokenizer, tmp_path, fast=True)
    seen = []
    trainer.callback_handler.on_evaluate = lambda args, state, control, metrics: seen.append(metrics) or control
    fast = trainer.evaluate()
    assert slow["eval_num_impressions"] == fast["eval_num_impressions"] == len(corpus.eval)
    for name in METRICS:
        assert fast[f"eval_{name}"] == pytest.approx(slow[f"eval_{name}"], abs=1e-6), name
    # Same keys as the slow path, except the loss, which needs per-token states the cache does not keep.
    assert set(slow) - set(fast) <= {"eval_loss", "eval_model_preparation_time"}
    assert seen and seen[0] is fast  # callbacks' on_evaluate got the metrics, as with Trainer.evaluate
    assert any("eval_auc" in entry for entry in trainer.state.log_history)
    direct = fast_evaluate(model, corpus.news, corpus.eval, batch_size=7)  # other batching, same numbers
    for name in METRICS:
        assert direct[name] == pytest.approx(slow[f"eval_{name}"], abs=1e-6), name


def test_trainer_falls_back_to_slow_path_when_a_loss_is_needed(setup, tmp_path):
    _, tokenizer, corpus, model = setup
    few = corpus.eval.select(range(4))
    trainer = trainer_for(model, corpus, tokenizer, tmp_path, fast=True)
    assert "eval_loss" not in trainer.evaluate(few)
    trainer.args.metric_for_best_model = "loss"  # the fast path has no eval_loss to select a checkpoint by
    assert "eval_loss" in trainer.evaluate(few)
    trainer.args.metric_for_best_model = None
    trainer.compute_metrics = lambda eval_pred: {"custom": 1.0}  # only the slow path can call it
    assert trainer.evaluate(few)["eval_custom"] == 1.0


def test_fast_evaluation_during_training(setup, tmp_path):
    """eval_strategy="steps" goes through the fast path and hands the model back in training mode."""
    _, tokenizer, corpus, _ = setup
    model = synthetic_model(tokenizer, corpus.category2id)
    args = MTRecTrainingArguments(
        output_dir=str(tmp_path), report_to=[], use_cpu=True, per_device_train_batch_size=4, max_steps=2,
        eval_strategy="steps", eval_steps=1, save_strategy="no", disable_tqdm=True,
    )
    collator = MTRecCollator(corpus.news, num_negatives=2, pad_token_id=tokenizer.pad_token_id)
    trainer = MTRecTrainer(
        model=model, args=args, train_dataset=corpus.train, eval_dataset=corpus.eval.select(range(8)),
        data_collator=collator,
    )
    trainer.train()
    evaluations = [entry for entry in trainer.state.log_history if "eval_auc" in entry]
    assert len(evaluations) == 2 and all("eval_loss" not in entry for entry in evaluations)
    assert model.training


def test_fast_evaluate_restores_training_mode(setup):
    _, _, corpus, model = setup
    model.train()
    try:
        fast_evaluate(model, corpus.news, corpus.eval.select(range(4)), batch_size=4)
        assert model.training
    finally:
        model.eval()


def test_cache_sorted_batches_match_one_by_one_encoding(setup):
    _, _, corpus, model = setup
    cache = NewsVectorCache.from_model(model, corpus.news, batch_size=32)
    assert cache.vectors.shape == (len(corpus.news), 32) and cache.news_ids == corpus.news["news_id"]
    with torch.no_grad():
        # Padding is masked, so length-sorted batches change the vectors by float32 rounding only (~2e-6 at
        # this scale: other matrix shapes, other summation order).
        for row in (0, 7, len(corpus.news) - 1):  # unpadded, one title at a time
            ids = torch.tensor([corpus.news[row]["input_ids"]])
            torch.testing.assert_close(cache.vectors[row], model.encode_news(ids)[0], atol=1e-5, rtol=0)


def test_cache_round_trip_and_staleness(setup, tmp_path):
    _, _, corpus, model = setup
    cache = NewsVectorCache.from_model(model, corpus.news)
    path = tmp_path / "news_vectors.safetensors"
    cache.save(path)
    loaded = NewsVectorCache.load(path, model)
    assert loaded.news_ids == cache.news_ids and loaded.fingerprint == cache.fingerprint
    assert torch.equal(loaded.vectors, cache.vectors)
    assert fast_evaluate(model, corpus.news, corpus.eval, cache=loaded) == fast_evaluate(
        model, corpus.news, corpus.eval, cache=cache
    )
    # A cache in another row order is matched to the table by news_id.
    shuffled = NewsVectorCache(cache.news_ids[::-1], cache.vectors.flip(0), fingerprint=cache.fingerprint)
    assert torch.equal(shuffled.aligned_to(corpus.news), cache.vectors)

    changed = synthetic_model(synthetic_tokenizer(), corpus.category2id)
    with torch.no_grad():
        changed.user_encoder.query.add_(1.0)  # the user encoder does not change news vectors: still valid
    NewsVectorCache.load(path, changed)
    with torch.no_grad():
        changed.news_encoder.embeddings.word_embeddings.weight[5, 0] += 1e-3  # as after a training step
    with pytest.raises(StaleCacheError, match="fingerprint"):
        NewsVectorCache.load(path, changed)
    with pytest.raises(ValueError, match="not a news vector cache"):
        from safetensors.torch import save_file

        save_file({"vectors": cache.vectors}, str(tmp_path / "other.safetensors"))
        NewsVectorCache.load(tmp_path / "other.safetensors")


def test_stale_cache_warns_when_not_strict(setup, tmp_path, caplog):
    _, _, corpus, model = setup
    cache = NewsVectorCache(["a"], torch.zeros(1, 32), fingerprint="0" * 16)
    cache.save(tmp_path / "c.safetensors")
    with caplog.at_level(logging.WARNING, logger="modeling_mtrec.serving.cache"):
        NewsVectorCache.load(tmp_path / "c.safetensors", model, strict=False)
    assert "Rebuild it" in caplog.text


# ------------------------------------------------------------------------------------ prediction files


def test_ranks_from_scores_by_hand():
    assert ranks_from_scores([0.1, 0.9, 0.5]) == [3, 1, 2]  # MIND's example line "1 [3,1,2]"
    assert ranks_from_scores([0.5, 0.5, 0.7]) == [2, 3, 1]  # tie: input order
    # Unknown candidates rank after every known one (whatever their placeholder score), in input order.
    assert ranks_from_scores([9.0, 0.2, 9.0, 0.4], known=[False, True, False, True]) == [3, 2, 4, 1]
    assert ranks_from_scores([0.0, 0.0, 0.0], known=[False] * 3) == [1, 2, 3]


def hand_cache(model) -> NewsVectorCache:
    g = torch.Generator().manual_seed(1)
    return NewsVectorCache([f"N{i}" for i in range(1, 7)], torch.randn(6, model.config.hidden_size, generator=g))


def expected_scores(model, cache, history: list[str], candidates: list[str]) -> np.ndarray:
    with torch.no_grad():
        user = model.encode_user(cache.lookup(history)[None])  # (1, H, D) -> (1, D)
        return model.score(user, cache.lookup(candidates)[None])[0].numpy()  # (1, C, D).(1, D) -> (C,)


BEHAVIORS = (
    "11\tU1\t11/15/2019 9:00:00 AM\tN1 N2\tN3-1 N4-0 N5-0\n"
    "12\tU2\t11/15/2019 9:01:00 AM\tN2 N99\tN6-0 N77-1 N3-0\n"  # one unknown history id, one unknown candidate
    "13\tU3\t11/15/2019 9:02:00 AM\tN1\tN88-0 N89-1\n"  # no known candidate
    "14\tU4\t11/15/2019 9:03:00 AM\t\tN4-0 N5-1 N6-0\n"  # empty history
)


def test_prediction_file_every_impression_in_order(tmp_path):
    model = MTRecModel(tiny_config()).eval()
    cache = hand_cache(model)
    (tmp_path / "behaviors.tsv").write_text(BEHAVIORS)
    stats = LoadStats()
    predictions = predict_ranks(model, cache, read_behaviors(tmp_path / "behaviors.tsv"), stats=stats)
    path = write_prediction_file(tmp_path / "out" / "prediction.txt", predictions, zip_file=True)
    lines = (tmp_path / "out" / "prediction.txt").read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["11", "12", "13", "14"]
    assert all(re.fullmatch(r"\d+ \[\d+(,\d+)*\]", line) for line in lines)
    ranks = [[int(r) for r in line.split()[1][1:-1].split(",")] for line in lines]
    assert all(sorted(r) == list(range(1, len(r) + 1)) for r in ranks)
    # Impression 11: ranks are the argsort of the model's own scores.
    scores = expected_scores(model, cache, ["N1", "N2"], ["N3", "N4", "N5"])
    assert ranks[0] == (np.argsort(np.argsort(-scores, kind="stable"), kind="stable") + 1).tolist()
    # Impression 12: N77 unknown -> last; the known ones ranked by score with the unknown history id dropped.
    known = expected_scores(model, cache, ["N2"], ["N6", "N3"])
    assert ranks[1][1] == 3 and ranks[1][0] == (1 if known[0] >= known[1] else 2)
    assert ranks[2] == [1, 2]  # nothing known: input order
    assert ranks[3] == [1, 2, 3]  # empty history: r_u = 0, all scores 0, input order
    assert stats == {
        "unknown_history_ids": 1, "unknown_candidate_ids": 3, "impressions_without_known_candidate": 1,
        "empty_history": 1,
    }
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == ["prediction.txt"]
        assert archive.read("prediction.txt").decode().splitlines() == lines


def test_prediction_on_unlabelled_test_split(tmp_path):
    model = MTRecModel(tiny_config()).eval()
    cache = hand_cache(model)
    unlabelled = re.sub(r"-[01]\b", "", BEHAVIORS)
    (tmp_path / "behaviors.tsv").write_text(unlabelled)
    behaviors = read_behaviors(tmp_path / "behaviors.tsv")
    assert behaviors[0]["clicks"] == [-1, -1, -1]
    labelled_dir = tmp_path / "labelled"
    labelled_dir.mkdir()
    (labelled_dir / "behaviors.tsv").write_text(BEHAVIORS)
    test = [p.line() for p in predict_ranks(model, cache, behaviors)]
    dev = [p.line() for p in predict_ranks(model, cache, read_behaviors(labelled_dir / "behaviors.tsv"))]
    assert test == dev  # labels are never read


def test_write_mind_predictions_from_folder(setup, tmp_path):
    dirs, tokenizer, corpus, model = setup
    path, cache = write_mind_predictions(model, tokenizer, dirs["dev"], tmp_path)
    assert path.name == "prediction.zip" and (tmp_path / "prediction.txt").is_file()
    lines = (tmp_path / "prediction.txt").read_text().splitlines()
    behaviors = read_behaviors(Path(dirs["dev"]) / "behaviors.tsv")
    assert [line.split()[0] for line in lines] == behaviors["impression_id"]
    # MIND's unlabelled test split: same folder without the -1/-0 suffixes, same predictions.
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    (test_dir / "news.tsv").write_bytes((Path(dirs["dev"]) / "news.tsv").read_bytes())
    labelled = (Path(dirs["dev"]) / "behaviors.tsv").read_text()
    (test_dir / "behaviors.tsv").write_text(re.sub(r"-[01]\b", "", labelled))
    write_mind_predictions(model, tokenizer, test_dir, test_dir, zip_file=False, cache=cache)
    assert (test_dir / "prediction.txt").read_text().splitlines() == lines
    # Encoding raw titles gives the tokenised table's vectors: the cache agrees with from_model.
    table_cache = NewsVectorCache.from_model(model, corpus.news)
    torch.testing.assert_close(cache.lookup(cache.news_ids), table_cache.lookup(cache.news_ids), atol=1e-5, rtol=0)


def test_recipe_writes_predictions_and_cache(setup, tmp_path, monkeypatch):
    """`train_mtrec.py --do_predict --news_cache` on a saved tiny model, 1 training step."""
    dirs, tokenizer, _, model = setup
    model.save_pretrained(tmp_path / "init")
    tokenizer.save_pretrained(tmp_path / "init")
    sys.path.insert(0, str(ROOT))
    import train_mtrec

    out = tmp_path / "run"
    monkeypatch.setattr(
        sys, "argv",
        ["train_mtrec.py", "--output_dir", str(out), "--init_from", str(tmp_path / "init"), "--train_dir",
         dirs["train"], "--dev_dir", dirs["dev"], "--max_steps", "1", "--max_title_length", str(TITLE_LENGTH),
         "--do_predict", "--news_cache", "--use_cpu", "--disable_tqdm", "true"],
    )
    train_mtrec.main()
    assert (out / "prediction.zip").is_file()
    assert len((out / "prediction.txt").read_text().splitlines()) == len(read_behaviors(Path(dirs["dev"]) / "behaviors.tsv"))
    recommender = MTRecRecommender.from_pretrained(out)  # loads news_vectors.safetensors, checked against the model
    assert len(recommender.cache) > 0


# ------------------------------------------------------------------------------------------ recommender


def test_recommender_ids_and_titles_agree(setup):
    _, tokenizer, corpus, model = setup
    recommender = MTRecRecommender(model, tokenizer)
    rows = corpus.news.select(range(6))
    recommender.add_news(rows["news_id"], rows["title"])
    ids, titles = rows["news_id"], [NewsTitle(t) for t in rows["title"]]
    by_id = recommender.recommend(ids[:3], ids[3:])
    by_title = recommender.recommend(titles[:3], titles[3:])
    mixed = recommender.recommend([ids[0], titles[1], ids[2]], [titles[3], ids[4], titles[5]])
    np.testing.assert_allclose(by_title.scores, by_id.scores, atol=1e-5)
    np.testing.assert_allclose(mixed.scores, by_id.scores, atol=1e-5)
    scores, ranking = by_id
    assert ranking.tolist() == np.argsort(-scores, kind="stable").tolist()
    # The cache agrees with the tokenised table, and the batched call with single calls.
    torch.testing.assert_close(
        recommender.cache.lookup(ids), encode_titles(model, tokenizer, rows["title"], TITLE_LENGTH), atol=1e-6, rtol=0
    )
    batch = recommender.recommend_batch([ids[:3], ids[:1]], [ids[3:], ids[1:4]])
    np.testing.assert_allclose(batch[0].scores, by_id.scores, atol=1e-6)
    np.testing.assert_allclose(batch[1].scores, recommender.recommend(ids[:1], ids[1:4]).scores, atol=1e-6)


def test_recommender_unknown_id_and_empty_history(setup):
    _, tokenizer, corpus, model = setup
    recommender = MTRecRecommender(model, tokenizer)
    recommender.add_news(["A", "B", "C"], corpus.news["title"][:3])
    with pytest.raises(KeyError, match="'Nope'"):
        recommender.recommend(["A"], ["B", "Nope"])
    scores, ranking = recommender.recommend([], ["C", "A", "B"])
    assert scores.tolist() == [0.0, 0.0, 0.0] and ranking.tolist() == [0, 1, 2]


def test_recommender_from_pretrained(setup, tmp_path):
    _, tokenizer, corpus, model = setup
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    cache = NewsVectorCache.from_model(model, corpus.news)
    cache.save(tmp_path / "news_vectors.safetensors")
    recommender = MTRecRecommender.from_pretrained(tmp_path)
    assert recommender.cache.news_ids == cache.news_ids
    ids = cache.news_ids
    expected = MTRecRecommender(model, tokenizer, cache).recommend(ids[:4], ids[4:9]).scores
    np.testing.assert_allclose(recommender.recommend(ids[:4], ids[4:9]).scores, expected, atol=1e-6)
