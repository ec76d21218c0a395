"""Bad input to serving and saved folders gets a clear error or a count, never garbage.

News ids are strings at every entry point (integers are normalised, other types refused); unreadable files are
named; a tokenizer that is not the model's is refused; empty requests give empty answers or a clear error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from modeling_mtrec import MTRecModel, MTRecRecommender, NewsTitle, NewsVectorCache, TwoTowerModel
from modeling_mtrec.evaluation.impressions import news_vector_cache
from modeling_mtrec.models.mtrec.collator import MTRecCollator
from tests.testing_utils import make_two_tower


def test_ids_are_normalised_to_strings_at_every_entry_point(setup) -> None:
    from modeling_mtrec.data.mind import as_id

    _, tokenizer, corpus, model = setup
    titles = corpus.news["title"][:3]
    cache = NewsVectorCache([1], torch.zeros(1, model.vector_size))
    cache.add([np.int64(2), "3"], torch.ones(2, model.vector_size))
    assert cache.news_ids == ["1", "2", "3"]
    assert 2 in cache and "2" in cache and 4 not in cache and 2.0 not in cache
    assert cache.rows([1, "2", np.int32(3)]) == [0, 1, 2]
    torch.testing.assert_close(cache.lookup([2]), torch.ones(1, model.vector_size))
    with pytest.raises(TypeError, match="a news id must be a string"):
        cache.add([2.0], torch.ones(1, model.vector_size))

    recommender = MTRecRecommender(model, tokenizer)
    recommender.add_news([10, 11, 12], titles)
    assert recommender.cache.news_ids == ["10", "11", "12"]
    by_int = recommender.recommend([10], [11, 12])
    by_str = recommender.recommend(["10"], ["11", "12"])
    np.testing.assert_array_equal(by_int.scores, by_str.scores)
    assert as_id(np.int64(7)) == "7" and as_id("N7") == "N7"
    # The sample builders' news index and the two-tower's keys take integer ids alike.
    from modeling_mtrec.data.samples import _RowLookup, stable_key

    assert stable_key(123) == stable_key("123")
    assert _RowLookup({1: 0, "N2": 1}).keys.to_pylist() == ["1", "N2"]
    with pytest.raises(TypeError, match="got bool"):
        as_id(True)
    with pytest.raises(TypeError, match="must be a list of news ids, got the string 'N12'"):
        recommender.recommend(["10"], "N12")


def test_truncated_news_vector_cache_names_its_file(setup, tmp_path: Path) -> None:
    _, _, corpus, model = setup
    path = tmp_path / "news_vectors.safetensors"
    news_vector_cache(model, corpus.news).save(path)
    path.write_bytes(path.read_bytes()[:-16])
    with pytest.raises(ValueError, match=f"{path}: cannot read the news vector cache .*truncated"):
        NewsVectorCache.load(path)
    # A file whose ids do not match its vectors (edited by hand, or written by something else) is named too.
    from safetensors.torch import save_file

    save_file({"vectors": torch.zeros(2, 3)}, str(path), metadata={"format": "mtrec-vectors/1", "kind": "news", "keys": '["a"]'})
    with pytest.raises(ValueError, match=f"{path}: not a valid news vector cache"):
        NewsVectorCache.load(path)


@pytest.mark.parametrize("keep", [0.5, 20 / 1e9], ids=["data-cut", "header-cut"])
def test_truncated_weights_name_their_file(setup, tmp_path: Path, keep: float) -> None:
    _, tokenizer, _, model = setup
    model.save_pretrained(tmp_path / "mtrec")
    make_two_tower().save_pretrained(tmp_path / "two_tower")
    for folder, model_class in (("mtrec", MTRecModel), ("two_tower", TwoTowerModel)):
        weights = tmp_path / folder / "model.safetensors"
        data = weights.read_bytes()
        weights.write_bytes(data[: max(20, int(len(data) * keep))])
        with pytest.raises(OSError, match=f"{weights}: cannot read the weights .*truncated"):
            model_class.from_pretrained(tmp_path / folder)


def test_a_folder_without_its_tokenizer_is_refused(setup, tmp_path: Path) -> None:
    """Without tokenizer.json the folder loads a tokenizer of 5 special tokens, which maps every word to [UNK]."""
    _, tokenizer, _, model = setup
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(ValueError, match=f"{tmp_path}: the tokenizer has 5 tokens but .* has {len(tokenizer)} rows"):
        MTRecRecommender.from_pretrained(tmp_path)


def test_a_tokenizer_of_another_model_is_refused(setup) -> None:
    _, tokenizer, _, model = setup
    config = model.config
    config_rows = config.encoder_config.vocab_size
    config.encoder_config.vocab_size = config_rows + 1
    try:
        with pytest.raises(ValueError, match="not this model's tokenizer"):
            MTRecRecommender(model, tokenizer)
    finally:
        config.encoder_config.vocab_size = config_rows


def test_empty_requests(setup) -> None:
    _, tokenizer, corpus, model = setup
    recommender = MTRecRecommender(model, tokenizer)
    empty = recommender.recommend([], [])
    assert empty.scores.shape == (0,) and empty.ranking.shape == (0,)
    assert recommender.recommend([NewsTitle("Cup final tonight")], []).scores.shape == (0,)
    # An impression without candidates (and without history) is refused by the collator with a clear message,
    # instead of an IndexError inside the model.
    with pytest.raises(ValueError, match="feature 0 \\(impression '9'\\) has no candidates"):
        MTRecCollator(corpus.news)([{"impression_id": "9", "history": [], "candidates": [], "labels": []}])


def test_prediction_lines_refuse_ids_that_would_break_the_file(tmp_path: Path) -> None:
    from modeling_mtrec.evaluation.leaderboard import ImpressionPrediction, write_prediction_file

    for bad in ("", "1 2", "1\t2"):
        with pytest.raises(ValueError, match="cannot be written to prediction.txt"):
            ImpressionPrediction(bad, [1, 2])
    with pytest.raises(ValueError, match="impression '7' is predicted twice"):
        write_prediction_file(tmp_path / "prediction.txt", [ImpressionPrediction("7", [1]), ImpressionPrediction("7", [1])])
