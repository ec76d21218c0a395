from __future__ import annotations

import inspect
import json
import logging

import numpy as np
import pytest
import torch

from modeling_mtrec import vectors as vector_tables
from modeling_mtrec.data.stats import LoadStats
from modeling_mtrec.evaluation.foundation import evaluate_foundation, grouped_auc
from modeling_mtrec.models.foundation.corpus import TINY, build_foundation_corpus
from modeling_mtrec.models.foundation.data import (
    FoundationCollator,
    FoundationFormatError,
    bucket,
    build_features,
    read_impressions,
    write_impressions,
)
from modeling_mtrec.vectors import StaleCacheError, TextFeatureCache
from tests.models.foundation.foundation_helpers import save_tiny_lm, tiny_config

SEARCH = {
    "domain": "alpha", "scenario": "search", "user_id": "u1", "user_sparse": ["age=2"], "history": ["i1", "i2"],
    "query_id": "q1", "query_text": "zorvak united", "item_id": "i3", "item_text": "Zorvak United wins",
    "item_sparse": ["pop=high"], "click": 1, "relevance": 1,
}
RECOMMENDATION = {"domain": "beta", "scenario": "recommendation", "user_id": "u2", "item_id": "i1",
                  "item_text": "Stocks rally", "click": 0}


def _write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------ reader


def test_read_jsonl_fills_defaults_and_parquet_round_trip(tmp_path):
    path = _write_lines(tmp_path / "rows.jsonl", [json.dumps(SEARCH), "", json.dumps(RECOMMENDATION)])
    rows = read_impressions(path)
    assert len(rows) == 2  # the blank line is no row
    assert rows[0] == {**SEARCH, "history_text": [], "query_sparse": []}
    assert rows[1]["relevance"] == -100 and rows[1]["query_text"] == "" and rows[1]["history"] == []
    parquet = write_impressions(rows, tmp_path / "rows.parquet")
    assert read_impressions(parquet).to_list() == rows.to_list()


@pytest.mark.parametrize(
    "row, problem",
    [
        ({**SEARCH, "scenario": "browse"}, "`scenario` must be one of"),
        ({**SEARCH, "click": 2}, "`click` must be 0, 1 or -100"),
        ({**SEARCH, "click": True}, "`click` must be 0, 1 or -100"),
        ({**SEARCH, "relevance": "1"}, "`relevance` must be 0, 1 or -100"),
        ({**SEARCH, "query_id": "", "query_text": ""}, "a search row needs `query_id` or `query_text`"),
        ({**RECOMMENDATION, "query_text": "x"}, "a recommendation row has no query"),
        ({**RECOMMENDATION, "relevance": 0}, "no `relevance` label"),
        ({**SEARCH, "click": -100, "relevance": -100}, "the row has no label"),
        ({**SEARCH, "item_id": "", "item_text": ""}, "needs `item_id` or `item_text`"),
        ({**SEARCH, "domain": ""}, "`domain` is missing or empty"),
        ({**SEARCH, "history": "i1 i2"}, "`history` must be a list of strings"),
        ({**SEARCH, "user_id": 7}, "`user_id` must be a string"),
        ({**SEARCH, "history_text": ["only one"]}, "`history_text` must be empty or as long as `history`"),
    ],
)
def test_bad_row_raises_naming_file_and_line(tmp_path, row, problem):
    path = _write_lines(tmp_path / "rows.jsonl", [json.dumps(SEARCH), json.dumps(row), json.dumps(RECOMMENDATION)])
    with pytest.raises(FoundationFormatError, match=rf"^{path}:2: .*{problem[:20]}"):
        read_impressions(path)


def test_broken_json_and_lenient_skip_is_counted(tmp_path, caplog):
    path = _write_lines(
        tmp_path / "rows.jsonl",
        [json.dumps(SEARCH), '{"domain": "alpha", ', json.dumps({**SEARCH, "click": 5}), json.dumps(RECOMMENDATION)],
    )
    with pytest.raises(FoundationFormatError, match=rf"^{path}:2: not valid JSON"):
        read_impressions(path)
    stats = LoadStats()
    with caplog.at_level(logging.WARNING):
        rows = read_impressions(path, lenient=True, stats=stats)
    assert len(rows) == 2 and stats["malformed_rows_skipped"] == 2
    assert f"{path}:3: `click` must be 0, 1 or -100" in caplog.text


def test_parquet_bad_row_names_the_row_and_ignored_columns_are_counted(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([{**SEARCH, "extra": "x"}, {**SEARCH, "click": 3, "extra": "y"}])
    pq.write_table(table, tmp_path / "rows.parquet")
    with pytest.raises(FoundationFormatError, match=r"rows.parquet:row 2: `click` must be 0, 1 or -100"):
        read_impressions(tmp_path / "rows.parquet")
    stats = LoadStats()
    rows = read_impressions(tmp_path / "rows.parquet", lenient=True, stats=stats)
    assert len(rows) == 1 and stats.as_dict() == {"ignored_columns": 1, "malformed_rows_skipped": 1}
    pq.write_table(pa.Table.from_pylist([{"scenario": "search"}]), tmp_path / "no_domain.parquet")
    with pytest.raises(FoundationFormatError, match=r"missing column\(s\) \['domain'\]"):
        read_impressions(tmp_path / "no_domain.parquet")


def test_invalid_utf8_is_reported_at_its_line_and_counted_when_lenient(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b"".join(json.dumps(row).encode() + b"\n" for row in (SEARCH, RECOMMENDATION, SEARCH))
                     + b'{"domain": "\xff"}\n' + json.dumps(RECOMMENDATION).encode() + b"\n")
    with pytest.raises(FoundationFormatError, match=rf"^{path}:4: not valid UTF-8"):
        read_impressions(path)
    stats = LoadStats()
    assert len(read_impressions(path, lenient=True, stats=stats)) == 4
    assert stats.as_dict() == {"malformed_rows_skipped": 1}


def test_json_nested_too_deeply_is_a_bad_row_not_a_recursion_error(tmp_path):
    path = _write_lines(tmp_path / "rows.jsonl", [json.dumps(SEARCH), "[" * 100_000 + "]" * 100_000])
    with pytest.raises(FoundationFormatError, match=rf"^{path}:2: .*nested too deeply"):
        read_impressions(path)
    stats = LoadStats()
    assert len(read_impressions(path, lenient=True, stats=stats)) == 1
    assert stats.as_dict() == {"malformed_rows_skipped": 1}


@pytest.mark.parametrize("text", ["", "\n\n", "  \n\t\n"])
def test_a_jsonl_file_without_rows_is_an_error(tmp_path, text):
    path = tmp_path / "rows.jsonl"
    path.write_text(text)
    with pytest.raises(FoundationFormatError, match=rf"^{path}: no usable impression row \(the file holds no row\)"):
        read_impressions(path, lenient=True)


def test_a_file_whose_every_row_is_skipped_is_an_error(tmp_path):
    path = _write_lines(tmp_path / "rows.jsonl", ["{not json", json.dumps({**SEARCH, "click": 7})])
    with pytest.raises(FoundationFormatError, match=rf"^{path}: no usable impression row \(every row was skipped"):
        read_impressions(path, lenient=True)
    good = _write_lines(tmp_path / "good.jsonl", [json.dumps(SEARCH)])
    with pytest.raises(FoundationFormatError, match=rf"^{path}: no usable"):  # one good file does not hide it
        read_impressions([good, path], lenient=True)


def test_an_empty_or_corrupt_parquet_file_is_named(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.Table.from_pylist([SEARCH]).slice(0, 0), empty)
    with pytest.raises(FoundationFormatError, match=rf"^{empty}: no usable impression row \(the file holds no row\)"):
        read_impressions(empty)
    corrupt = tmp_path / "corrupt.parquet"
    pq.write_table(pa.Table.from_pylist([SEARCH] * 50), corrupt)
    corrupt.write_bytes(corrupt.read_bytes()[:200])
    with pytest.raises(FoundationFormatError, match=rf"^{corrupt}: not a readable Parquet file"):
        read_impressions(corrupt, lenient=True)


def test_a_compressed_jsonl_file_says_so(tmp_path):
    import gzip

    path = tmp_path / "rows.jsonl"
    path.write_bytes(gzip.compress((json.dumps(SEARCH) + "\n").encode()))
    with pytest.raises(FoundationFormatError, match=rf"^{path}: the file is gzip-compressed"):
        read_impressions(path, lenient=True)


def test_cr_only_line_endings_are_named(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(SEARCH) + "\r" + json.dumps(RECOMMENDATION) + "\r", newline="")
    with pytest.raises(FoundationFormatError, match=rf"^{path}:1: not valid JSON .*2 records separated by carriage"):
        read_impressions(path)


def test_unknown_file_type_is_refused(tmp_path):
    (tmp_path / "rows.csv").write_text("domain\n")
    with pytest.raises(ValueError, match="unknown file type '.csv'"):
        read_impressions(tmp_path / "rows.csv")


# ---------------------------------------------------------------------------------------------- features


class _FakeCache:
    """A TextFeatureCache stand-in: a fixed vector per text."""

    def __init__(self, dim=12):
        self.dim, self.seen = dim, []

    def encode(self, texts):
        self.seen.append(list(texts))
        return torch.stack([torch.full((self.dim,), float(len(t))) for t in texts])


def test_build_features_hashes_truncates_and_finds_history_texts(tmp_path):
    rows = read_impressions(_write_lines(tmp_path / "r.jsonl", [
        json.dumps(SEARCH),
        json.dumps({**RECOMMENDATION, "domain": "alpha", "history": ["i3", "i1", "i9", "i2"]}),
        json.dumps({**RECOMMENDATION, "domain": "alpha", "history": ["i3"], "history_text": ["own text of i3"]}),
    ]))
    config = tiny_config()
    stats = LoadStats()
    cache = _FakeCache()
    features = build_features(rows, config, text_cache=cache, max_history_length=3, stats=stats)
    cols = features.columns
    assert cols["domain_ids"].tolist() == [0, 0, 0]
    assert cols["item_ids"][0] == bucket("i3", config.item_id_buckets) and 0 < cols["item_ids"][0] < 60
    assert cols["query_ids"].tolist()[1:] == [0, 0] and cols["query_text_index"].tolist()[1:] == [-1, -1]
    # Row 1 keeps its 3 most recent items; i9 is no item of any row, so it has no text.
    assert cols["history_item_ids"][1].tolist() == [bucket(h, 60) for h in ("i1", "i9", "i2")]
    texts = [features.texts[i] if i >= 0 else None for i in cols["history_text_index"][1].tolist()]
    assert texts == ["Stocks rally", None, None]  # i2 is no item either
    assert features.texts[cols["history_text_index"][2, 0]] == "own text of i3"
    assert stats.as_dict() == {"history_items_without_text": 3, "history_truncated": 1}
    assert cache.seen == [features.texts] and len(set(features.texts)) == len(features.texts)
    with pytest.raises(ValueError, match=r"domain\(s\) \['omega'\] are not in the model's domains"):
        build_features(read_impressions(_write_lines(tmp_path / "b.jsonl", [json.dumps({**RECOMMENDATION, "domain": "omega"})])), config)


def test_collator_batches_only_the_texts_it_uses():
    paths = build_foundation_corpus_tiny()
    rows = read_impressions(paths["source_train"]).select(range(60))
    config = tiny_config(domains=["text", "id", "sparse"])
    features = build_features(rows, config, text_cache=_FakeCache())
    batch = FoundationCollator(features)([{"row": i} for i in (3, 10, 42)])
    assert batch["domain_ids"].shape == (3,)
    for key in ("query_text_index", "item_text_index", "history_text_index"):
        local, full = batch[key], features.columns[key][[3, 10, 42]]
        assert torch.equal(local < 0, full < 0)
        torch.testing.assert_close(batch["text_embeds"][local[local >= 0]], features.text_embeds[full[full >= 0]])
    used = torch.cat([batch[k].reshape(-1) for k in ("query_text_index", "item_text_index", "history_text_index")])
    assert set(used[used >= 0].tolist()) == set(range(batch["text_embeds"].shape[0]))


def test_collator_pads_tokens_for_the_end_to_end_lm(tmp_path):
    from modeling_mtrec.data import synthetic_tokenizer

    rows = read_impressions(_write_lines(tmp_path / "r.jsonl", [json.dumps(SEARCH), json.dumps({**RECOMMENDATION, "domain": "alpha"})]))
    features = build_features(rows, tiny_config(), tokenizer=synthetic_tokenizer(), max_text_length=8)
    batch = FoundationCollator(features)([0, 1])
    assert batch["text_input_ids"].shape == batch["text_attention_mask"].shape
    assert batch["text_input_ids"].shape[0] == len(features.texts) and batch["text_input_ids"].shape[1] <= 8
    assert "text_embeds" not in batch


# ------------------------------------------------------------------------------------------- text cache


def test_text_cache_is_reused_and_refused_for_another_lm(tmp_path, monkeypatch):
    lm_a = save_tiny_lm(tmp_path / "lm_a", seed=0)
    lm_b = save_tiny_lm(tmp_path / "lm_b", seed=1)
    calls = []
    real = vector_tables._mean_pooled

    def counting(texts, *args, **kwargs):
        calls.append(list(texts))
        return real(texts, *args, **kwargs)

    monkeypatch.setattr(vector_tables, "_mean_pooled", counting)
    cache = TextFeatureCache.open(lm_a, tmp_path / "cache", max_length=16)
    first = cache.encode(["stocks rally", "vaccine news", "stocks rally"])
    assert calls == [["stocks rally", "vaccine news"]] and first.shape == (3, 12)
    torch.testing.assert_close(first[0], first[2])
    path = cache.save()
    # Reopened: the file is used, only the new text goes through the LM.
    again = TextFeatureCache.open(lm_a, tmp_path / "cache", max_length=16)
    vectors = again.encode(["vaccine news", "a new title"])
    assert calls[1:] == [["a new title"]] and again.encoded == 1
    torch.testing.assert_close(vectors[0], first[1])
    # Another LM (or another max_length) never reads these vectors.
    with pytest.raises(StaleCacheError, match="not of"):
        TextFeatureCache.load(path, lm_b, max_length=16)
    with pytest.raises(StaleCacheError):
        TextFeatureCache.load(path, lm_a, max_length=8)
    other = TextFeatureCache.open(lm_b, tmp_path / "cache", max_length=16)
    assert len(other) == 0 and other.path != path
    # A copy of the same LM elsewhere has the same fingerprint.
    import shutil

    shutil.copytree(lm_a, tmp_path / "copy")
    assert TextFeatureCache.load(path, tmp_path / "copy", max_length=16).fingerprint == cache.fingerprint


# --------------------------------------------------------------------------------------------- metrics


def test_grouped_auc_by_hand():
    labels = [1, 0, 0, 1, 1, 0, 1]
    scores = [0.9, 0.1, 0.5, 0.2, 0.8, 0.9, 0.3]
    groups = ["a", "a", "a", "b", "b", "b", "c"]  # c has one class: left out
    # a: positive 0.9 vs negatives 0.1, 0.5 -> 1.0 (3 rows); b: positives 0.2, 0.8 vs 0.9 -> 0.0 (3 rows)
    value, counted = grouped_auc(labels, scores, groups)
    assert counted == 2 and value == pytest.approx((3 * 1.0 + 3 * 0.0) / 6)
    assert np.isnan(grouped_auc([1, 1], [0.1, 0.2], ["a", "b"])[0])


# ---------------------------------------------------------------------------------------------- corpus


_TINY_CACHE: dict = {}


def build_foundation_corpus_tiny():
    if "paths" not in _TINY_CACHE:
        import tempfile

        _TINY_CACHE["paths"] = build_foundation_corpus(tempfile.mkdtemp(prefix="foundation-tiny-"), news_tsv=None, sizes=TINY)
    return _TINY_CACHE["paths"]


def test_tiny_corpus_is_deterministic_and_plants_its_signals(tmp_path):
    paths = build_foundation_corpus_tiny()
    again = build_foundation_corpus(tmp_path, sizes=TINY)  # no news file: the package's synthetic news
    for name in ("source_train", "target_test"):
        assert open(paths[name]).read() == open(again[name]).read()
    info = json.load(open(paths["info"]))
    assert info["news"] == "synthetic" and info["source_domains"] == ["text", "id", "sparse"]
    rows = {name: read_impressions(paths[name]) for name in ("source_train", "source_test", "target_train", "target_test")}
    assert set(rows["source_train"]["domain"]) == {"text", "id", "sparse"}
    assert set(rows["target_train"]["domain"]) == set(rows["target_test"]["domain"]) == {"target"}
    assert len(rows["target_train"]) == TINY.target_train_rows
    # Cold items: target test items are in no training row and no history.
    seen = set(rows["source_train"]["item_id"]) | set(rows["target_train"]["item_id"])
    seen |= {h for name in rows for history in rows[name]["history"] for h in history}
    assert not set(rows["target_test"]["item_id"]) & seen
    # The id domain shows few items, often; the sparse domain's items carry a tag.
    source = rows["source_train"]
    id_items = {i for i, d in zip(source["item_id"], source["domain"]) if d == "id"}
    assert len(id_items) <= TINY.id_domain_items
    assert all(any(s.startswith("tag=") for s in sparse) == (d == "sparse") for sparse, d in zip(source["item_sparse"], source["domain"]))
    # Relevance: entity queries appear in relevant titles; both labels occur; recommendation rows have none.
    for row in source:
        if row["scenario"] == "recommendation":
            assert row["relevance"] == -100 and row["query_text"] == ""
    relevance = [r for r in source["relevance"] if r != -100]
    assert 0.3 < np.mean(relevance) < 0.7
    assert 0.5 < info["oracle_test_ctr_auc"]["target"] <= 1.0


def test_the_news_file_is_an_argument_and_nothing_else_is_read(tmp_path):
    """The corpus reads the news file it is given, and no path outside the package otherwise (synthetic news)."""
    from modeling_mtrec.models.foundation.corpus import _load_news

    (tmp_path / "news.tsv").write_text(
        "N1\tnews\tnewsus\tFirst title\t\t\t[]\t[]\nN2\tsports\tsportsnfl\t\t\t\t[]\t[]\n"
    )
    news, source = _load_news(tmp_path / "news.tsv", seed=0)
    assert source == "mind_sample" and [n["news_id"] for n in news] == ["N1"]  # a news without a title is left out
    assert _load_news(None, seed=0)[1] == "synthetic"
    assert inspect.signature(build_foundation_corpus).parameters["news_tsv"].default is None


# ------------------------------------------------------------------------------------------ short training


@pytest.mark.slow
def test_short_pretrain_and_finetune_lifts_cold_domain_auc(tmp_path):
    """Pretrain on the tiny corpus's source domains with the offline all-MiniLM-L6-v2 text features, fine-tune on
    the target domain (L0+L1 frozen): on the target's cold items, CTR and relevance AUC end clearly above 0.5."""
    from modeling_mtrec import FoundationConfig, FoundationModel
    from modeling_mtrec.default_encoder import default_encoder_path
    from modeling_mtrec.training.foundation import (
        FoundationDataset,
        FoundationTrainer,
        FoundationTrainingArguments,
    )

    torch.set_num_threads(1)
    paths = build_foundation_corpus_tiny()
    cache = TextFeatureCache.open(default_encoder_path(), None, max_length=32)
    rows = {name: read_impressions(paths[name]) for name in ("source_train", "target_train", "target_test")}
    config = FoundationConfig(domains=["text", "id", "sparse"], embedding_dim=16, id_embedding_dim=16, user_id_buckets=401,
                              item_id_buckets=2003, query_id_buckets=1009, sparse_buckets=101, sparse_hidden_sizes=[16],
                              text_embed_dim=384, expert_hidden_sizes=[32, 16], domain_adaptive_dim=32, tower_hidden_sizes=[8],
                              interaction_features=True)
    torch.manual_seed(0)
    model = FoundationModel(config)
    args = FoundationTrainingArguments(output_dir=str(tmp_path / "out"), per_device_train_batch_size=64, learning_rate=3e-3,
                                       num_train_epochs=15, report_to="none", save_strategy="no", disable_tqdm=True,
                                       use_cpu=True, seed=0, lr_scheduler_type="constant")
    source = build_features(rows["source_train"], config, text_cache=cache)
    FoundationTrainer(model=model, args=args, train_dataset=FoundationDataset(source)).train()
    model.add_domain("target")
    model.freeze("L0+L1")
    target_train = build_features(rows["target_train"], model.config, text_cache=cache)
    target_test = build_features(rows["target_test"], model.config, text_cache=cache)
    FoundationTrainer(model=model, args=args, train_dataset=FoundationDataset(target_train)).train()
    report = evaluate_foundation(model, target_test)["domains"]["target"]
    assert report["ctr_auc"] > 0.58 and report["relevance_auc"] > 0.7, report
