"""The synthetic MIND corpus: exact format, determinism, valid entity offsets, planted preferences, tokenizer."""

from __future__ import annotations

import collections
import hashlib
import json
import os
import re

import pytest
from datasets import Dataset

from modeling_mtrec.data.mind import NEWS_COLUMNS
from modeling_mtrec.data.stats import LoadStats
from modeling_mtrec.data.synthetic import generate_synthetic_mind
from modeling_mtrec.data.synthetic_vocab import (
    APPEAL_WORDS,
    CATEGORY_TOPICS,
    SYNTHETIC_VOCAB_SIZE,
    synthetic_tokenizer,
)
from modeling_mtrec.models.mtrec.processing_mtrec import title_entity_spans, tokenize_news

SMALL = {"num_news": 200, "num_users": 60, "num_dev_news": 40, "num_dev_users": 30, "num_categories": 4}
TIME = re.compile(r"^11/\d{1,2}/2019 \d{1,2}:\d\d:\d\d [AP]M$")


def read_tsv(path: str) -> list[list[str]]:
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t") for line in f]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, str]:
    return generate_synthetic_mind(str(tmp_path_factory.mktemp("synthetic")), seed=7, **SMALL)


@pytest.fixture(scope="module")
def tokenizer():
    return synthetic_tokenizer()


def test_same_seed_gives_identical_files(tmp_path):
    first = generate_synthetic_mind(str(tmp_path / "a"), seed=3, **SMALL)
    second = generate_synthetic_mind(str(tmp_path / "b"), seed=3, **SMALL)
    other = generate_synthetic_mind(str(tmp_path / "c"), seed=4, **SMALL)
    for split in ("train", "dev"):
        for name in ("news.tsv", "behaviors.tsv"):
            with (
                open(os.path.join(first[split], name), "rb") as a,
                open(os.path.join(second[split], name), "rb") as b,
            ):
                assert a.read() == b.read()
    with (
        open(os.path.join(first["train"], "news.tsv"), "rb") as a,
        open(os.path.join(other["train"], "news.tsv"), "rb") as c,
    ):
        assert a.read() != c.read()


def test_mind_format(corpus):
    for split in ("train", "dev"):
        news = read_tsv(os.path.join(corpus[split], "news.tsv"))
        behaviors = read_tsv(os.path.join(corpus[split], "behaviors.tsv"))
        assert {len(row) for row in news} == {8}
        assert {len(row) for row in behaviors} == {5}
        news_ids = {row[0] for row in news}
        assert len(news_ids) == len(news)
        assert all(row[1] in CATEGORY_TOPICS and row[2] in CATEGORY_TOPICS[row[1]] for row in news)
        assert all(row[7] == "[]" and row[5].startswith("https://example.com/") for row in news)
        assert [row[0] for row in behaviors] == [str(i + 1) for i in range(len(behaviors))]
        for _, user_id, time, history, impressions in behaviors:
            assert user_id.startswith("U") and TIME.match(time), time
            assert set(history.split()) <= news_ids
            candidates = [token.rsplit("-", 1) for token in impressions.split()]
            assert all(news_id in news_ids and label in ("0", "1") for news_id, label in candidates)
            labels = [label for _, label in candidates]
            assert "0" in labels and labels.count("1") in (1, 2)
            assert 5 <= len(candidates) <= 15
        assert any(history == "" for _, _, _, history, _ in behaviors)  # cold-start users


def test_dev_is_a_separate_split_with_fresh_news(corpus):
    train_news = {row[0] for row in read_tsv(os.path.join(corpus["train"], "news.tsv"))}
    dev_news = {row[0] for row in read_tsv(os.path.join(corpus["dev"], "news.tsv"))}
    assert train_news < dev_news and len(dev_news - train_news) == SMALL["num_dev_news"]
    train_users = {row[1] for row in read_tsv(os.path.join(corpus["train"], "behaviors.tsv"))}
    dev_behaviors = read_tsv(os.path.join(corpus["dev"], "behaviors.tsv"))
    assert len(dev_behaviors) == SMALL["num_dev_users"]
    assert not train_users & {row[1] for row in dev_behaviors}
    fresh = {token.rsplit("-", 1)[0] for row in dev_behaviors for token in row[4].split()} - train_news
    assert fresh  # dev candidates include news never seen in training


def test_entity_annotations_match_titles(corpus):
    news = read_tsv(os.path.join(corpus["dev"], "news.tsv"))
    num_annotated = num_repeated = 0
    for row in news:
        title, annotations = row[3], json.loads(row[6])
        num_annotated += bool(annotations)
        for entity in annotations:
            assert set(entity) == {
                "Label",
                "Type",
                "WikidataId",
                "Confidence",
                "OccurrenceOffsets",
                "SurfaceForms",
            }
            assert re.fullmatch(r"S\d+", entity["WikidataId"])
            assert len(entity["OccurrenceOffsets"]) == len(entity["SurfaceForms"])
            num_repeated += len(entity["OccurrenceOffsets"]) > 1
            for offset, surface in zip(entity["OccurrenceOffsets"], entity["SurfaceForms"], strict=True):
                assert title[offset : offset + len(surface)] == surface
        title_entity_spans(title, row[6])  # the tokeniser accepts every annotation
    assert 0.5 < num_annotated / len(news) < 0.95
    assert num_repeated > 0


def test_categories_are_predictable_from_topic_words():
    topic_words = [word for topics in CATEGORY_TOPICS.values() for words in topics.values() for word in words]
    assert len(topic_words) == len(set(topic_words))  # no topic word is shared by two categories


def favourite_click_ratio(folder: str) -> float:
    """Click rate of candidates in the user's most clicked category of the history over that of the others."""
    news = {row[0]: row for row in read_tsv(os.path.join(folder, "news.tsv"))}
    shown = collections.Counter()
    clicked = collections.Counter()
    for _, _, _, history, impressions in read_tsv(os.path.join(folder, "behaviors.tsv")):
        if not history:
            continue
        # the user's most clicked category in the history stands in for their (hidden) favourite
        favourite = collections.Counter(news[n][1] for n in history.split()).most_common(1)[0][0]
        for token in impressions.split():
            news_id, label = token.rsplit("-", 1)
            group = "favourite" if news[news_id][1] == favourite else "other"
            shown[group] += 1
            clicked[group] += int(label)
    return (clicked["favourite"] / shown["favourite"]) / (clicked["other"] / shown["other"])


def top_subcategory_share(folder: str, news_tsv: str | None = None) -> float:
    """Mean over users (histories of 5+ clicks) of the share of their most clicked category's clicks that fall in
    its most clicked subcategory: about 1/2 when subcategories are clicked alike (3 per category, a few clicks)."""
    news = {row[0]: row for row in read_tsv(news_tsv or os.path.join(folder, "news.tsv"))}
    shares = []
    for _, _, _, history, _ in read_tsv(os.path.join(folder, "behaviors.tsv")):
        if len(history.split()) < 5:
            continue
        category = collections.Counter(news[n][1] for n in history.split()).most_common(1)[0][0]
        subcategories = collections.Counter(news[n][2] for n in history.split() if news[n][1] == category)
        shares.append(subcategories.most_common(1)[0][1] / subcategories.total())
    return sum(shares) / len(shares)


def test_clicks_follow_the_planted_preferences(corpus):
    assert favourite_click_ratio(corpus["train"]) > 2.5


def test_tokenizer_covers_the_corpus_and_splits_entities(corpus, tokenizer):
    assert tokenizer.is_fast and len(tokenizer) == SYNTHETIC_VOCAB_SIZE < 1000
    assert tokenizer.pad_token_id == 0
    assert tokenizer.tokenize("Zorvak United") == ["zor", "##vak", "united"]
    titles = [row[3] for row in read_tsv(os.path.join(corpus["dev"], "news.tsv"))]
    assert all(tokenizer.unk_token not in tokenizer.tokenize(title) for title in titles)


def test_tokenize_news_on_the_corpus(corpus, tokenizer):
    rows = read_tsv(os.path.join(corpus["train"], "news.tsv"))
    news = Dataset.from_dict({name: [row[i] for row in rows] for i, name in enumerate(NEWS_COLUMNS)})
    stats = LoadStats()
    table = tokenize_news(news, tokenizer, max_title_length=30, stats=stats)
    assert stats == {}  # clean annotations, every title fits
    tags = [tag for labels in table["ner_labels"] for tag in labels]
    assert tags.count(1) > 0 and tags.count(2) > tags.count(1)  # entities span several word pieces
    assert sorted(set(table["category_label"])) == list(range(SMALL["num_categories"]))


def test_tokenizer_saves_and_reloads(tmp_path):
    from transformers import AutoTokenizer

    synthetic_tokenizer(str(tmp_path))
    reloaded = AutoTokenizer.from_pretrained(str(tmp_path))
    assert len(reloaded) == SYNTHETIC_VOCAB_SIZE
    assert reloaded("Zorvak United")["input_ids"] == synthetic_tokenizer()("Zorvak United")["input_ids"]


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="num_categories"):
        generate_synthetic_mind(str(tmp_path), num_categories=9)
    with pytest.raises(ValueError, match="candidates_per_impression"):
        generate_synthetic_mind(str(tmp_path), candidates_per_impression=(2, 4))
    for name in ("category_boost", "entity_boost", "subcategory_boost", "appeal_boost"):
        for value in (0.0, -2.0, float("inf"), float("nan"), True, "6"):
            with pytest.raises(ValueError, match=f"{name} must be a finite number > 0"):
                generate_synthetic_mind(str(tmp_path), **{name: value})
    for value in (-1, 1.5, True):
        with pytest.raises(ValueError, match="topic_words_per_title must be None or an integer >= 0"):
            generate_synthetic_mind(str(tmp_path), topic_words_per_title=value)
    assert not os.listdir(tmp_path)  # refused before writing anything


# ---------------------------------------------------------------------------------------------------------------
# The click model's knobs: a knob at its default draws nothing (the files are pinned); each knob does what it says
# ---------------------------------------------------------------------------------------------------------------


def sha256_of(folders: dict[str, str], names: tuple[str, ...] = ("news.tsv", "behaviors.tsv")) -> str:
    digest = hashlib.sha256()
    for split in ("train", "dev"):
        for name in names:
            with open(os.path.join(folders[split], name), "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


# Digests of the corpora of the module's fixtures (`corpus`, `simulated`): a seed pins the files. `corpus`'s is the one
# generated before the knobs existed (commit 956f117); `simulated`'s changed once, when both generators came to draw an
# impression's clicks before its timestamp.
CORPUS_SHA256 = "6426861c169031e90409558b81df532a127f31744337627a4ddc7a8e49fa4fd9"
SIMULATED_SHA256 = "647f6c2a2028d666dbcf9da9b05ace89b4b817171390e580e70f3aec129bd8a9"
KNOB_DEFAULTS = {"category_boost": 6.0, "entity_boost": 4.0, "subcategory_boost": 1.0, "appeal_boost": 1.0}


def test_default_knobs_draw_nothing(corpus, tmp_path):
    assert sha256_of(corpus) == CORPUS_SHA256
    explicit = generate_synthetic_mind(str(tmp_path), seed=7, topic_words_per_title=None, **KNOB_DEFAULTS, **SMALL)
    assert sha256_of(explicit) == CORPUS_SHA256


def test_stronger_boosts_plant_stronger_preferences(tmp_path):
    flat = generate_synthetic_mind(str(tmp_path / "flat"), seed=7, category_boost=1.0, entity_boost=1.0, **SMALL)
    strong = generate_synthetic_mind(str(tmp_path / "strong"), seed=7, category_boost=20.0, **SMALL)
    assert favourite_click_ratio(flat["train"]) < 1.5 < 2.5 < favourite_click_ratio(strong["train"]) / 2


def test_subcategory_boost_plants_a_preference_within_the_category(corpus, tmp_path):
    boosted = generate_synthetic_mind(str(tmp_path), seed=7, subcategory_boost=8.0, **SMALL)
    # (users have 1 or 2 favourite subcategories of 3, so the top share stays well below 1 even when boosted)
    assert top_subcategory_share(boosted["train"]) > top_subcategory_share(corpus["train"]) + 0.1
    for split in ("train", "dev"):  # the news are the same: only the users' draws change
        with open(os.path.join(corpus[split], "news.tsv"), "rb") as a, open(os.path.join(boosted[split], "news.tsv"), "rb") as b:
            assert a.read() == b.read()


def test_appeal_boost_raises_every_users_clicks_on_appealing_titles(corpus, tmp_path):
    def clicked_share_of_appealing(folder: str) -> tuple[float, float]:
        titles = {row[0]: row[3] for row in read_tsv(os.path.join(folder, "news.tsv"))}

        def appealing(news_id: str) -> bool:
            return any(w.strip(":,.").lower() in APPEAL_WORDS for w in titles[news_id].split())

        shown = clicked = shown_appealing = clicked_appealing = 0
        for row in read_tsv(os.path.join(folder, "behaviors.tsv")):
            for token in row[4].split():
                news_id, label = token.rsplit("-", 1)
                shown += 1
                shown_appealing += appealing(news_id)
                clicked += label == "1"
                clicked_appealing += label == "1" and appealing(news_id)
        return shown_appealing / shown, clicked_appealing / clicked

    shown, clicked = clicked_share_of_appealing(corpus["train"])
    assert 0.1 < shown < 0.8 and abs(clicked - shown) < 0.08  # default: wording does not matter
    boosted = generate_synthetic_mind(str(tmp_path), seed=7, appeal_boost=5.0, **SMALL)
    shown, clicked = clicked_share_of_appealing(boosted["train"])
    assert clicked > 1.5 * shown
    with open(os.path.join(corpus["dev"], "news.tsv"), "rb") as a, open(os.path.join(boosted["dev"], "news.tsv"), "rb") as b:
        assert a.read() == b.read()  # the same news: only the clicks change


@pytest.mark.parametrize("cap", [0, 1, 2])
def test_topic_words_per_title_caps_the_category_words_of_each_title(corpus, tmp_path, cap):
    topic_words = {word for topics in CATEGORY_TOPICS.values() for words in topics.values() for word in words}

    def topic_counts(folder: str) -> collections.Counter:
        titles = [row[3] for row in read_tsv(os.path.join(folder, "news.tsv"))]
        return collections.Counter(sum(w.strip(":,.").lower() in topic_words for w in t.split()) for t in titles)

    capped = topic_counts(generate_synthetic_mind(str(tmp_path), seed=7, topic_words_per_title=cap, **SMALL)["dev"])
    assert max(capped) == cap
    assert max(topic_counts(corpus["dev"])) > 2


# ---------------------------------------------------------------------------------------------------------------
# simulate_mind_behaviors: simulated users over a given news.tsv (here a synthetic one, never real MIND rows)
# ---------------------------------------------------------------------------------------------------------------

SIMULATED = {"num_users": 80, "num_dev_users": 30, "num_dev_news": 40, "min_category_news": 5}


@pytest.fixture(scope="module")
def source_news(tmp_path_factory) -> str:
    folders = generate_synthetic_mind(str(tmp_path_factory.mktemp("source")), seed=11, **SMALL)
    return os.path.join(folders["train"], "news.tsv")


@pytest.fixture(scope="module")
def simulated(tmp_path_factory, source_news) -> dict[str, str]:
    from modeling_mtrec.data.synthetic import simulate_mind_behaviors

    return simulate_mind_behaviors(
        source_news, str(tmp_path_factory.mktemp("simulated")), seed=5, **SIMULATED
    )


def test_simulated_behaviors_are_deterministic(tmp_path, source_news, simulated):
    from modeling_mtrec.data.synthetic import simulate_mind_behaviors

    again = simulate_mind_behaviors(source_news, str(tmp_path / "again"), seed=5, **SIMULATED)
    other = simulate_mind_behaviors(source_news, str(tmp_path / "other"), seed=6, **SIMULATED)
    for split in ("train", "dev"):
        with open(os.path.join(simulated[split], "behaviors.tsv"), "rb") as a:
            first = a.read()
        with open(os.path.join(again[split], "behaviors.tsv"), "rb") as b:
            assert first == b.read()
        with open(os.path.join(other[split], "behaviors.tsv"), "rb") as c:
            assert first != c.read()


def test_simulated_corpus_is_mind_format_with_the_news_copied_through(source_news, simulated, tokenizer):
    from modeling_mtrec.models.mtrec.corpus import load_mind

    with open(source_news, "rb") as f:
        source = f.read()
    news_ids = {row[0] for row in read_tsv(source_news)}
    for split in ("train", "dev"):
        with open(os.path.join(simulated[split], "news.tsv"), "rb") as f:
            assert f.read() == source
        behaviors = read_tsv(os.path.join(simulated[split], "behaviors.tsv"))
        assert {len(row) for row in behaviors} == {5}
        assert [row[0] for row in behaviors] == [str(i + 1) for i in range(len(behaviors))]
        for _, user_id, time, history, impressions in behaviors:
            assert user_id.startswith("U") and TIME.match(time), time
            assert set(history.split()) <= news_ids
            labels = [token.rsplit("-", 1)[1] for token in impressions.split()]
            assert "0" in labels and labels.count("1") in (1, 2) and set(labels) <= {"0", "1"}
        assert any(row[3] == "" for row in behaviors)  # cold-start users
    train = read_tsv(os.path.join(simulated["train"], "behaviors.tsv"))
    dev = read_tsv(os.path.join(simulated["dev"], "behaviors.tsv"))
    assert len(dev) == SIMULATED["num_dev_users"] and not {r[1] for r in train} & {r[1] for r in dev}
    in_train = {n for r in train for n in r[3].split()} | {
        t.rsplit("-", 1)[0] for r in train for t in r[4].split()
    }
    dev_candidates = {t.rsplit("-", 1)[0] for r in dev for t in r[4].split()}
    assert dev_candidates - in_train  # held-out news reach dev only
    assert len(news_ids - in_train) >= SIMULATED["num_dev_news"]
    corpus = load_mind(tokenizer, train_dir=simulated["train"], eval_dir=simulated["dev"])
    assert len(corpus.eval) == SIMULATED["num_dev_users"] and len(corpus.train) > SIMULATED["num_users"]


def test_simulated_clicks_follow_planted_categories_and_entities(source_news, simulated):
    news = {row[0]: row for row in read_tsv(source_news)}
    entities = {n: {e["WikidataId"] for e in json.loads(row[6])} for n, row in news.items()}
    shown = collections.Counter()
    clicked = collections.Counter()
    for _, _, _, history, impressions in read_tsv(os.path.join(simulated["train"], "behaviors.tsv")):
        if not history:
            continue
        favourite = collections.Counter(news[n][1] for n in history.split()).most_common(1)[0][0]
        # entities clicked at least twice in the history stand in for the user's favourite entities
        liked = {
            e
            for e, c in collections.Counter(e for n in history.split() for e in entities[n]).items()
            if c > 1
        }
        for token in impressions.split():
            news_id, label = token.rsplit("-", 1)
            for kind, match in (
                ("category", news[news_id][1] == favourite),
                ("entity", bool(entities[news_id] & liked)),
            ):
                shown[kind, match] += 1
                clicked[kind, match] += int(label)
    rate = {key: clicked[key] / shown[key] for key in shown}
    assert rate["category", True] > 2 * rate["category", False], rate
    assert rate["entity", True] > 1.5 * rate["entity", False], rate


def test_simulate_rejects_bad_arguments(tmp_path, source_news):
    from modeling_mtrec.data.synthetic import simulate_mind_behaviors

    with pytest.raises(ValueError, match="candidates_per_impression"):
        simulate_mind_behaviors(source_news, str(tmp_path), candidates_per_impression=(2, 4))
    with pytest.raises(ValueError, match="num_users"):
        simulate_mind_behaviors(source_news, str(tmp_path), num_users=0)
    with pytest.raises(ValueError, match="subcategory_boost must be a finite number > 0"):
        simulate_mind_behaviors(source_news, str(tmp_path), subcategory_boost=float("nan"))


def test_simulated_behaviors_are_pinned_by_the_seed(simulated):
    assert sha256_of(simulated) == SIMULATED_SHA256


def test_simulated_subcategory_boost_plants_a_preference_within_the_category(tmp_path, source_news, simulated):
    from modeling_mtrec.data.synthetic import simulate_mind_behaviors

    boosted = simulate_mind_behaviors(source_news, str(tmp_path), seed=5, subcategory_boost=8.0, **SIMULATED)
    assert top_subcategory_share(boosted["train"], source_news) > top_subcategory_share(simulated["train"], source_news) + 0.1


# ---------------------------------------------------------------------------------------------------------------
# Presets: named corpora, arguments that replace the defaults
# ---------------------------------------------------------------------------------------------------------------


def test_preset_is_its_arguments(tmp_path):
    from modeling_mtrec.data.synthetic import PRESETS

    small = {"num_news": 120, "num_dev_news": 20, "num_users": 30, "num_dev_users": 10}
    preset = {"demo_small": {**PRESETS["demo"], **small}}
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(PRESETS, "demo_small", preset["demo_small"])
        named = generate_synthetic_mind(str(tmp_path / "named"), seed=2, preset="demo_small")
    explicit = generate_synthetic_mind(str(tmp_path / "explicit"), seed=2, **preset["demo_small"])
    assert sha256_of(named) == sha256_of(explicit)


def test_preset_refuses_an_unknown_name_and_an_argument_it_sets(tmp_path):
    with pytest.raises(ValueError, match="unknown synthetic corpus preset 'nope'; choose one of \\['demo', 'tiny'\\]"):
        generate_synthetic_mind(str(tmp_path), preset="nope")
    with pytest.raises(ValueError, match="preset 'demo' sets \\['num_users'\\]"):
        generate_synthetic_mind(str(tmp_path), preset="demo", num_users=10)
    assert not os.listdir(tmp_path)
