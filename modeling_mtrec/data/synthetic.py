"""A small, deterministic synthetic corpus in exact MIND format (its vocabulary and tokenizer: `synthetic_vocab`).

MIND cannot ship with the package (Microsoft's research license), yet the training recipe needs a default
corpus and the tests need data. `generate_synthetic_mind` writes ``train/`` and ``dev/`` folders with
``news.tsv`` and ``behaviors.tsv`` that the real readers load unchanged, and in which every signal MTRec
learns from is planted and recoverable from the titles alone:

* categories: each category (with three subcategories) has its own topic words, so the category head can
  learn them from the title;
* entities: invented names tied to categories, capitalised in titles and annotated in ``title_entities`` with
  exact character offsets, several made of unusual words that split into word pieces (``B I I``);
* clicks: every user has one or two favourite categories and a few favourite entities; histories and clicks
  are drawn with weights that favour them (with noise), so a history-based user encoder can learn them.

How strong and how textual those signals are can be set (`generate_synthetic_mind`'s ``category_boost``,
``entity_boost``, ``subcategory_boost``: favourite subcategories within the favourite categories, which only the
titles' topic words tell apart; ``appeal_boost``: a clickbait-like cue in the wording that raises every user's
clicks; ``topic_words_per_title``: fewer topic words, so titles say less about their
category). A draw that could not change the corpus is not made (no favourite subcategories with
``subcategory_boost=1``, no choice of topic slots without ``topic_words_per_title``), so each knob left at its
default leaves the random stream, hence the files, as they are without it.

`PRESETS` names corpora made for one use: ``"demo"`` is the corpus of ``python train_mtrec.py`` (titles
matter more than categories), ``"tiny"`` one for smoke tests; ``generate_synthetic_mind(folder, preset="demo")``.

`simulate_mind_behaviors` runs the same click model over a REAL MIND news.tsv (simulated users only).

Everything is drawn from one ``random.Random(seed)``: the same seed gives byte-identical files.
`synthetic_tokenizer` (in `synthetic_vocab`) builds a BERT-style uncased WordPiece tokenizer (a few hundred ids)
that covers every word the generator writes, so tests can train a tiny BERT offline.
"""

from __future__ import annotations

import bisect
import contextlib
import inspect
import json
import logging
import math
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .mind import EntityAnnotationError, read_news, title_entity_ids
from .synthetic_vocab import (
    APPEAL_WORDS,
    CATEGORY_ENTITIES,
    CATEGORY_TOPICS,
    FILLER_WORDS,
    TEMPLATES_BY_ENTITY_COUNT,
    VERBS,
)

__all__ = ["PRESETS", "generate_synthetic_mind", "simulate_mind_behaviors", "synthetic_fallback"]

logger = logging.getLogger(__name__)

# Share of titles with 0 / 1 / 2 entities.
ENTITY_COUNT_WEIGHTS: tuple[float, float, float] = (0.25, 0.5, 0.25)
OFF_CATEGORY_ENTITY_RATE = 0.1  # entities mostly come from the title's own category

# Click model: a candidate's weight is multiplied by these when it matches a user's preferences.
CATEGORY_BOOST = 6.0
ENTITY_BOOST = 4.0
SUBCATEGORY_BOOST = 1.0  # 1.0: no favourite subcategories (none are drawn)
APPEAL_BOOST = 1.0  # 1.0: titles' wording does not matter to clicks
HISTORY_LENGTH = (5, 20)  # clicks per history, inclusive range
CANDIDATES_PER_IMPRESSION = (5, 15)  # inclusive range
NUM_DEV_USERS = 200  # generate_synthetic_mind: one dev impression each
NUM_FAVOURITE_ENTITIES = 3
EMPTY_HISTORY_EVERY = 25  # users 0, 25, 50, ... of each split have an empty history (cold start)

# Named corpora: `generate_synthetic_mind` arguments that replace its defaults (`preset=`).
PRESETS: dict[str, dict[str, Any]] = {
    # The corpus of `python train_mtrec.py` (its --synthetic_preset default). Clicks follow tastes that only the titles
    # show: a favourite subcategory (its topic words), favourite entities (their names) and an appealing wording, the
    # same for every user; the favourite category counts less. So ranking by the category of past clicks (the
    # baseline the recipe prints beside the model) leaves room that a model reading titles can take. About 1,500
    # clicks (one epoch of the main job, 2.5-8 minutes on 2 CPU cores) and 600 dev impressions, 3-10 clicks per
    # history.
    "demo": {
        "num_users": 400, "num_dev_users": 600, "history_length": (3, 10),
        "category_boost": 3.0, "entity_boost": 10.0, "subcategory_boost": 30.0, "appeal_boost": 5.0,
    },
    # A corpus that a recipe loads, trains a step on and evaluates in seconds: for smoke tests and CI.
    "tiny": {"num_news": 150, "num_users": 40, "num_dev_news": 30, "num_dev_users": 30},
}


@dataclass
class _News:
    news_id: str
    category: str
    subcategory: str
    title: str
    abstract: str
    entities: list[int]  # indices into the global entity list
    title_entities: str  # the JSON column


@dataclass
class _User:
    user_id: str
    favourite_categories: set[str]
    favourite_entities: set[int]
    favourite_subcategories: set[tuple[str, str]] = field(default_factory=set)  # (category, subcategory)
    history: list[str] = field(default_factory=list)


T = TypeVar("T")


def _weighted_sample(rng: random.Random, items: Sequence[T], weights: Sequence[float], k: int) -> list[T]:
    """``k`` distinct items drawn one by one with probability proportional to their weight.

    Pure-Python arithmetic on ``rng.random()`` (no libm calls), so the draw is identical on every platform.
    """
    k = min(k, len(items))
    cumulative: list[float] = []
    total = 0.0
    for weight in weights:
        total += weight
        cumulative.append(total)
    chosen: dict[int, None] = {}
    while len(chosen) < k:
        index = min(bisect.bisect_right(cumulative, rng.random() * total), len(items) - 1)
        chosen.setdefault(index, None)
    return [items[i] for i in chosen]


def _is_appealing(title: str) -> bool:
    """Whether a title holds one of `APPEAL_WORDS` (``appeal_boost``)."""
    return not APPEAL_WORDS.isdisjoint(word.strip(":,.").lower() for word in title.split())


def _check_preferences(**boosts: float) -> None:
    for name, boost in boosts.items():
        if isinstance(boost, bool) or not isinstance(boost, (int, float)) or not (math.isfinite(boost) and boost > 0):
            raise ValueError(f"{name} must be a finite number > 0 (1: no preference), got {boost!r}")


class _CorpusBuilder:
    """Draws news, users, histories and impressions from one `random.Random`, in a fixed order."""

    def __init__(
        self,
        rng: random.Random,
        categories: list[str],
        *,
        category_boost: float = CATEGORY_BOOST,
        entity_boost: float = ENTITY_BOOST,
        subcategory_boost: float = SUBCATEGORY_BOOST,
        appeal_boost: float = APPEAL_BOOST,
        topic_words_per_title: int | None = None,
    ) -> None:
        self.rng = rng
        self.categories = categories
        self.category_boost, self.entity_boost, self.subcategory_boost = category_boost, entity_boost, subcategory_boost
        self.appeal_boost = appeal_boost
        self.topic_words_per_title = topic_words_per_title
        self.entities: list[tuple[str, str, str]] = [  # (name, type, category)
            (name, kind, category) for category in categories for name, kind in CATEGORY_ENTITIES[category]
        ]
        self.entities_by_category = {
            c: [i for i, (_, _, category) in enumerate(self.entities) if category == c] for c in categories
        }
        self.confidences = [round(0.85 + 0.15 * rng.random(), 3) for _ in self.entities]

    def news(self, number: int) -> _News:
        rng = self.rng
        category = rng.choice(self.categories)
        subcategory = rng.choice(sorted(CATEGORY_TOPICS[category]))
        own_topics = CATEGORY_TOPICS[category][subcategory]
        all_topics = [w for ws in CATEGORY_TOPICS[category].values() for w in ws]
        num_entities = rng.choices((0, 1, 2), weights=ENTITY_COUNT_WEIGHTS)[0]
        template = rng.choice(TEMPLATES_BY_ENTITY_COUNT[num_entities])
        picked: list[int] = []
        while len(picked) < num_entities:
            source = category
            if rng.random() < OFF_CATEGORY_ENTITY_RATE and len(self.categories) > 1:
                source = rng.choice([c for c in self.categories if c != category])
            entity = rng.choice(self.entities_by_category[source])
            if entity not in picked:
                picked.append(entity)

        parts = template.split("{")
        topic_slots = [i for i, part in enumerate(parts) if part.startswith("T}")]
        if self.topic_words_per_title is not None:  # drawn only then: without a cap there is nothing to choose
            # The other topic slots get filler words: the title keeps its shape, with fewer words of its category.
            topic_slots = rng.sample(topic_slots, min(self.topic_words_per_title, len(topic_slots)))

        # Fill the template left to right, recording each entity's character offset as it is written.
        title = ""
        occurrences: dict[int, list[int]] = {}
        for i, part in enumerate(parts):
            if i == 0:
                title += part
                continue
            slot, rest = part.split("}", 1)
            if slot in ("E", "E2"):
                entity = picked[0 if slot == "E" else 1]
                occurrences.setdefault(entity, []).append(len(title))
                title += self.entities[entity][0]
            elif slot == "T" and i in topic_slots:  # mostly the subcategory's own words, sometimes any of the category
                title += rng.choice(own_topics if rng.random() < 0.7 else all_topics)
            elif slot in ("F", "T"):
                title += rng.choice(FILLER_WORDS)
            elif slot == "V":
                title += rng.choice(VERBS)
            else:  # pragma: no cover - guarded by the fixed templates above
                raise AssertionError(f"unknown template slot {slot!r}")
            title += rest
        title = title[0].upper() + title[1:]  # same length: the offsets stay valid

        annotations = [
            {
                "Label": self.entities[entity][0],
                "Type": self.entities[entity][1],
                "WikidataId": f"S{100 + entity}",  # fake ids: never mistaken for real Wikidata "Q" ids
                "Confidence": self.confidences[entity],
                "OccurrenceOffsets": offsets,
                "SurfaceForms": [self.entities[entity][0]] * len(offsets),
            }
            for entity, offsets in occurrences.items()
        ]
        abstract_words = [rng.choice(all_topics) for _ in range(4)]
        abstract = (
            f"{rng.choice(FILLER_WORDS).capitalize()} {abstract_words[0]} and {abstract_words[1]}, "
            f"with {abstract_words[2]} {rng.choice(VERBS)} the {abstract_words[3]}."
        )
        return _News(
            news_id=f"N{number}",
            category=category,
            subcategory=subcategory,
            title=title,
            abstract=abstract,
            entities=list(occurrences),
            title_entities=json.dumps(annotations) if annotations else "[]",
        )

    def user(self, number: int) -> _User:
        rng = self.rng
        favourites = set(rng.sample(self.categories, k=min(rng.choice((1, 1, 2)), len(self.categories))))
        pool = sorted(i for c in sorted(favourites) for i in self.entities_by_category[c])
        entities = set(rng.sample(pool, k=min(NUM_FAVOURITE_ENTITIES, len(pool))))
        return _User(f"U{number}", favourites, entities)

    def favourite_subcategories(
        self, user: _User, subcategory_news: dict[str, dict[str, int]]
    ) -> set[tuple[str, str]]:
        """One subcategory of each favourite category of ``user``, drawn in proportion to its number of train news
        (``subcategory_news``: category -> subcategory -> count). One, not several: with three subcategories per
        category, a second favourite would blur the preference the titles' topic words are there to show."""
        picked: set[tuple[str, str]] = set()
        for category in sorted(user.favourite_categories):
            counts = subcategory_news.get(category, {})
            names = sorted(counts)
            picked.update((category, s) for s in _weighted_sample(self.rng, names, [counts[s] for s in names], 1))
        return picked

    def weight(self, user: _User, news: _News) -> float:
        """How much more likely ``user`` is to click ``news`` than a news that matches none of their tastes."""
        weight = self.category_boost if news.category in user.favourite_categories else 1.0
        if (news.category, news.subcategory) in user.favourite_subcategories:
            weight *= self.subcategory_boost
        if user.favourite_entities.intersection(news.entities):
            weight *= self.entity_boost
        if self.appeal_boost != 1.0 and _is_appealing(news.title):
            weight *= self.appeal_boost
        return weight

    def history(self, user: _User, pool: Sequence[_News], length: int) -> list[str]:
        clicked = _weighted_sample(self.rng, pool, [self.weight(user, n) for n in pool], length)
        return [n.news_id for n in clicked]

    def impression(self, user: _User, candidates: list[_News]) -> str:
        """One impression: 1-2 clicks drawn by preference weight among the shuffled candidates."""
        rng = self.rng
        rng.shuffle(candidates)
        num_clicks = 1 if rng.random() < 0.7 else 2
        clicks = _weighted_sample(rng, candidates, [self.weight(user, n) for n in candidates], num_clicks)
        clicked_ids = {n.news_id for n in clicks}
        return " ".join(f"{n.news_id}-{int(n.news_id in clicked_ids)}" for n in candidates)

    def clicks_then_time(self, user: _User, candidates: list[_News], first_day: int, num_days: int) -> Row:
        """A behaviour row whose clicks are drawn before its timestamp (`generate_synthetic_mind`)."""
        impressions = self.impression(user, candidates)
        return ("", user.user_id, self.time(first_day, num_days), " ".join(user.history), impressions)

    def time_then_clicks(self, user: _User, candidates: list[_News], first_day: int, num_days: int) -> Row:
        """A behaviour row whose timestamp is drawn before its clicks (`simulate_mind_behaviors`)."""
        time = self.time(first_day, num_days)
        return ("", user.user_id, time, " ".join(user.history), self.impression(user, candidates))

    def time(self, first_day: int, num_days: int) -> str:
        """A MIND-style timestamp, e.g. ``11/12/2019 9:05:41 AM``."""
        rng = self.rng
        day = first_day + rng.randrange(num_days)
        hour, minute, second = rng.randrange(24), rng.randrange(60), rng.randrange(60)
        hour12 = hour % 12 or 12
        return f"11/{day}/2019 {hour12}:{minute:02d}:{second:02d} {'AM' if hour < 12 else 'PM'}"


def _write_news(path: str, news: Sequence[_News]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for n in news:
            url = f"https://example.com/news/{n.news_id}.html"
            row = (n.news_id, n.category, n.subcategory, n.title, n.abstract, url, n.title_entities, "[]")
            f.write("\t".join(row) + "\n")


Row = tuple[str, str, str, str, str]


def _check_shape(
    impressions_per_user: tuple[int, int], history_length: tuple[int, int], candidates_per_impression: tuple[int, int]
) -> None:
    for name, (low, high) in (
        ("impressions_per_user", impressions_per_user),
        ("history_length", history_length),
        ("candidates_per_impression", candidates_per_impression),
    ):
        if not 0 <= low <= high:
            raise ValueError(
                f"{name} must be an inclusive range (low, high) with 0 <= low <= high, got {low, high}"
            )
    if candidates_per_impression[0] < 3:
        raise ValueError(
            f"candidates_per_impression needs at least 3 (2 clicks + 1 non-click), got {candidates_per_impression}"
        )


def _behaviours(
    builder: _CorpusBuilder,
    make_user: Callable[[int], _User],
    train_news: list[_News],
    dev_news: list[_News],
    row: Callable[[_User, list[_News], int, int], Row],
    *,
    num_users: int,
    num_dev_users: int,
    impressions_per_user: tuple[int, int],
    history_length: tuple[int, int],
    candidates_per_impression: tuple[int, int],
) -> tuple[list[Row], list[Row]]:
    """The train and dev behaviour rows of the click model (see `generate_synthetic_mind` for their shape).

    `row(user, candidates, first_day, num_days)` draws one impression's clicks and timestamp: each generator draws
    them in its own order (`generate_synthetic_mind` the clicks first, `simulate_mind_behaviors` the time first).
    """
    rng = builder.rng
    subcategory_news: dict[str, dict[str, int]] = {}
    for n in train_news:
        counts = subcategory_news.setdefault(n.category, {})
        counts[n.subcategory] = counts.get(n.subcategory, 0) + 1

    def user_with_history(number: int, index: int) -> _User:
        user = make_user(number)
        if builder.subcategory_boost != 1.0:  # drawn only then: at 1 a favourite subcategory weighs nothing
            user.favourite_subcategories = builder.favourite_subcategories(user, subcategory_news)
        length = 0 if index % EMPTY_HISTORY_EVERY == 0 else rng.randint(*history_length)
        user.history = builder.history(user, train_news, length)
        return user

    # Train: each user keeps one history (as in MIND) and sees impressions made of news outside it.
    train_rows = []
    for u in range(num_users):
        user = user_with_history(u + 1, u)
        seen = set(user.history)
        unseen = [n for n in train_news if n.news_id not in seen]
        for _ in range(rng.randint(*impressions_per_user)):
            candidates = rng.sample(unseen, rng.randint(*candidates_per_impression))
            train_rows.append(row(user, candidates, 9, 6))

    # Dev: new users, one impression each, mixing held-out news with train news outside the history.
    dev_rows = []
    for u in range(num_dev_users):
        user = user_with_history(num_users + u + 1, u)
        seen = set(user.history)
        size = rng.randint(*candidates_per_impression)
        num_fresh = min(size // 2, len(dev_news))
        candidates = rng.sample(dev_news, num_fresh)
        candidates += rng.sample([n for n in train_news if n.news_id not in seen], size - num_fresh)
        dev_rows.append(row(user, candidates, 15, 1))
    return train_rows, dev_rows


def _write_splits(
    output_dir: str, rows: dict[str, list[Row]], write_news: Callable[[str, str], None]
) -> dict[str, str]:
    """``output_dir/{train,dev}/``: ``write_news(split, path)`` writes news.tsv; the rows, numbered, behaviors.tsv."""
    folders = {split: os.path.join(output_dir, split) for split in ("train", "dev")}
    for split, folder in folders.items():
        os.makedirs(folder, exist_ok=True)
        write_news(split, os.path.join(folder, "news.tsv"))
        with open(os.path.join(folder, "behaviors.tsv"), "w", encoding="utf-8", newline="\n") as f:
            for i, behaviour in enumerate(rows[split]):
                f.write("\t".join((str(i + 1), *behaviour[1:])) + "\n")
    return folders


def generate_synthetic_mind(
    output_dir: str,
    *,
    seed: int = 0,
    preset: str | None = None,
    num_news: int = 1200, num_users: int = 600, num_categories: int = 6,  # train
    num_dev_news: int = 200, num_dev_users: int = NUM_DEV_USERS,  # dev
    impressions_per_user: tuple[int, int] = (2, 4),
    history_length: tuple[int, int] = HISTORY_LENGTH,
    candidates_per_impression: tuple[int, int] = CANDIDATES_PER_IMPRESSION,
    category_boost: float = CATEGORY_BOOST,
    entity_boost: float = ENTITY_BOOST,
    subcategory_boost: float = SUBCATEGORY_BOOST,
    appeal_boost: float = APPEAL_BOOST,
    topic_words_per_title: int | None = None,
) -> dict[str, str]:
    """Write a synthetic MIND corpus: ``output_dir/{train,dev}/{news,behaviors}.tsv``.

    Train: ``num_news`` news and ``num_users`` users with ``impressions_per_user`` impressions each (inclusive
    range; 2,341 clicks, i.e. train samples, with the defaults). Dev: ``num_dev_users`` *other* users,
    one impression each, whose histories come from the train news and whose candidates are half train news and
    half ``num_dev_news`` fresh news that only dev/news.tsv holds (it holds the train news too, like MIND's).
    Each user has one fixed history (``history_length`` clicks, inclusive range; empty for every 25th user)
    and each impression ``candidates_per_impression`` candidates with 1-2 clicks, so every impression has a
    click and a non-click.

    Args:
        output_dir: folder to write into (created if missing).
        seed: the only source of randomness; the same seed gives byte-identical files.
        preset: a name in `PRESETS` (e.g. ``"demo"``), whose arguments replace the defaults below; an argument a
            preset sets cannot also be given (a `ValueError` names it); the others can.
        num_categories: how many of the 8 built-in categories to use.
        category_boost: weight multiplier, in histories and clicks, of a news of one of the user's favourite
            categories (finite, > 0; 1: no category preference).
        entity_boost: weight multiplier of a news that names one of the user's favourite entities.
        subcategory_boost: weight multiplier of a news of one of the user's favourite subcategories (one
            within each favourite category; on top of ``category_boost``). Subcategories share their category's
            entities and differ only in their topic words, so this is a preference that only the title's words
            show. 1 (default): no favourite subcategories are drawn.
        appeal_boost: weight multiplier, for every user, of a news whose title holds one of `APPEAL_WORDS` (a
            clickbait-like cue: the title's wording alone makes it likelier to be clicked, which no category, and
            for a fresh news no click count, shows). 1 (default): wording does not matter.
        topic_words_per_title: at most this many topic words (the words that name the category and subcategory)
            per title, the other topic slots of its template getting filler words; None (default): every topic
            slot gets a topic word (1 to 4 per title, by template).

    Returns:
        ``{"train": <train folder>, "dev": <dev folder>}``, ready for `load_mind_split`.
    """
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown synthetic corpus preset {preset!r}; choose one of {sorted(PRESETS)}")
        arguments = {name: value for name, value in locals().items() if name in _GENERATOR_DEFAULTS}
        given = sorted(name for name in PRESETS[preset] if arguments[name] != _GENERATOR_DEFAULTS[name])
        if given:
            raise ValueError(f"preset {preset!r} sets {given}: give the preset or these arguments, not both")
        return generate_synthetic_mind(output_dir, seed=seed, **{**arguments, **PRESETS[preset]})
    if not 1 <= num_categories <= len(CATEGORY_TOPICS):
        raise ValueError(f"num_categories must be in [1, {len(CATEGORY_TOPICS)}], got {num_categories}")
    _check_shape(impressions_per_user, history_length, candidates_per_impression)
    _check_preferences(
        category_boost=category_boost, entity_boost=entity_boost, subcategory_boost=subcategory_boost,
        appeal_boost=appeal_boost,
    )
    if topic_words_per_title is not None and (
        isinstance(topic_words_per_title, bool) or not isinstance(topic_words_per_title, int) or topic_words_per_title < 0
    ):
        raise ValueError(f"topic_words_per_title must be None or an integer >= 0, got {topic_words_per_title!r}")
    if num_news < candidates_per_impression[1] + history_length[1] or num_users < 1:
        raise ValueError(
            f"num_news={num_news} must exceed the longest history plus the largest impression, and num_users >= 1"
        )

    rng = random.Random(seed)
    builder = _CorpusBuilder(
        rng, list(CATEGORY_TOPICS)[:num_categories], category_boost=category_boost, entity_boost=entity_boost,
        subcategory_boost=subcategory_boost, appeal_boost=appeal_boost, topic_words_per_title=topic_words_per_title,
    )
    train_news = [builder.news(i + 1) for i in range(num_news)]
    dev_news = [builder.news(num_news + i + 1) for i in range(num_dev_news)]
    train_rows, dev_rows = _behaviours(
        builder, builder.user, train_news, dev_news, builder.clicks_then_time,
        num_users=num_users, num_dev_users=num_dev_users,
        impressions_per_user=impressions_per_user, history_length=history_length,
        candidates_per_impression=candidates_per_impression,
    )
    news = {"train": train_news, "dev": train_news + dev_news}
    return _write_splits(
        output_dir, {"train": train_rows, "dev": dev_rows}, lambda split, path: _write_news(path, news[split])
    )


# The corpus arguments of `generate_synthetic_mind` and their defaults (what a preset may replace).
_GENERATOR_DEFAULTS = {
    name: parameter.default for name, parameter in inspect.signature(generate_synthetic_mind).parameters.items()
    if name not in ("output_dir", "seed", "preset")
}
assert all(set(arguments) <= set(_GENERATOR_DEFAULTS) for arguments in PRESETS.values())


def simulate_mind_behaviors(
    news_tsv: str,
    output_dir: str,
    *,
    seed: int = 0,
    num_users: int = 1000, num_dev_users: int = 300, num_dev_news: int = 300,
    min_category_news: int = 20,
    impressions_per_user: tuple[int, int] = (2, 4),
    history_length: tuple[int, int] = HISTORY_LENGTH,
    candidates_per_impression: tuple[int, int] = CANDIDATES_PER_IMPRESSION,
    category_boost: float = CATEGORY_BOOST,
    entity_boost: float = ENTITY_BOOST,
    subcategory_boost: float = SUBCATEGORY_BOOST,
    lenient: bool = False,
) -> dict[str, str]:
    """Simulate MIND users over a REAL MIND ``news.tsv``: ``output_dir/{train,dev}/{news,behaviors}.tsv``.

    The news (titles, categories, title entities) are the real ones: ``news.tsv`` is copied through unchanged
    into both split folders. Only the users are simulated, with the click model of `generate_synthetic_mind`:
    each user has one or two favourite categories (drawn among the categories with at least
    ``min_category_news`` news, in proportion to their number of news: big categories have more fans) and up
    to ``NUM_FAVOURITE_ENTITIES`` favourite entities (WikidataIds of the title entities found in news of those
    categories, preferring ids that occur in at least two news);
    histories and clicks are drawn with weights ``category_boost`` / ``entity_boost`` on matching news, so the
    preferences show in the clicks, with noise. With ``subcategory_boost`` != 1 each user also has one
    favourite subcategory in each favourite category (drawn in proportion to their number of news), whose news
    weigh ``subcategory_boost`` times more.

    Split: ``num_dev_news`` news drawn at random are held out of every train behaviour (histories and
    candidates); train users see the other news. Dev users are *other* users, one impression each, whose
    histories come from the train news and whose candidates are half held-out news and half train news, as in
    `generate_synthetic_mind`. Every 25th user of each split has an empty history (cold start).

    The real news file is never modified, and nothing of it goes anywhere but ``output_dir``: write that
    outside any repository when the news are licensed (MIND's are).

    Args:
        news_tsv: a MIND ``news.tsv`` (8 columns), read with `read_news`.
        output_dir: folder to write into (created if missing).
        seed: the only source of randomness; the same seed and file give byte-identical behaviours.
        category_boost, entity_boost, subcategory_boost: the click model's weights, as in
            `generate_synthetic_mind` (the same defaults).
        lenient: passed to `read_news` (skip malformed rows; skipped news are never used by the users).

    Returns:
        ``{"train": <train folder>, "dev": <dev folder>}``, ready for `load_mind`.
    """
    _check_shape(impressions_per_user, history_length, candidates_per_impression)
    _check_preferences(category_boost=category_boost, entity_boost=entity_boost, subcategory_boost=subcategory_boost)
    if num_users < 1 or num_dev_users < 0 or num_dev_news < 0:
        raise ValueError("num_users must be >= 1, num_dev_users and num_dev_news >= 0")

    table = read_news(news_tsv, lenient=lenient)
    entity_ids: dict[str, int] = {}  # WikidataId -> index, in order of first appearance
    news: list[_News] = []
    for news_id, category, subcategory, title, entities_json in zip(
        table["news_id"],
        table["category"],
        table["subcategory"],
        table["title"],
        table["title_entities"],
        strict=True,
    ):
        wikidata: list[str] = []
        with contextlib.suppress(EntityAnnotationError):  # a broken annotation: a news without entities
            wikidata = title_entity_ids(entities_json)
        indices = [entity_ids.setdefault(w, len(entity_ids)) for w in wikidata]
        news.append(_News(news_id, category, subcategory, title, "", indices, entities_json))

    rng = random.Random(seed)
    builder = _CorpusBuilder(  # no built-in vocabulary: only its click model is used
        rng, [], category_boost=category_boost, entity_boost=entity_boost, subcategory_boost=subcategory_boost
    )
    held_out = set(rng.sample(range(len(news)), min(num_dev_news, len(news))))
    train_news = [n for i, n in enumerate(news) if i not in held_out]
    dev_news = [n for i, n in enumerate(news) if i in held_out]
    if len(train_news) < candidates_per_impression[1] + history_length[1]:
        raise ValueError(
            f"{news_tsv}: {len(train_news)} train news (after holding out {len(dev_news)}) cannot hold the "
            "longest history plus the largest impression"
        )

    news_count: dict[str, int] = {}
    for n in train_news:
        news_count[n.category] = news_count.get(n.category, 0) + 1
    categories = sorted(c for c, count in news_count.items() if count >= min_category_news) or sorted(
        news_count
    )
    entity_news: dict[str, dict[int, int]] = {c: {} for c in news_count}  # category -> entity -> #news
    for n in train_news:
        for e in n.entities:
            entity_news[n.category][e] = entity_news[n.category].get(e, 0) + 1

    def simulated_user(number: int) -> _User:
        k = min(rng.choice((1, 1, 2)), len(categories))
        favourites = set(_weighted_sample(rng, categories, [news_count[c] for c in categories], k))
        counts: dict[int, int] = {}
        for c in sorted(favourites):
            for e, count in entity_news[c].items():
                counts[e] = counts.get(e, 0) + count
        pool = sorted(e for e, count in counts.items() if count >= 2) or sorted(counts)
        entities = set(rng.sample(pool, k=min(NUM_FAVOURITE_ENTITIES, len(pool))))
        return _User(f"U{number}", favourites, entities)

    train_rows, dev_rows = _behaviours(
        builder, simulated_user, train_news, dev_news, builder.time_then_clicks,
        num_users=num_users, num_dev_users=num_dev_users,
        impressions_per_user=impressions_per_user, history_length=history_length,
        candidates_per_impression=candidates_per_impression,
    )
    return _write_splits(
        output_dir, {"train": train_rows, "dev": dev_rows}, lambda split, path: shutil.copyfile(news_tsv, path)
    )


def synthetic_fallback(
    train_dir: str | None,
    dev_dir: str | None,
    output_dir: str,
    *,
    seed: int = 0,
    context: AbstractContextManager | None = None,
    **generate_kwargs,
) -> tuple[str, str | None]:
    """The recipes' default data: ``(train_dir, dev_dir)`` as given when there is a `train_dir`, else the
    synthetic corpus written to ``output_dir/synthetic_mind`` (its dev split unless a `dev_dir` is given).

    `context` wraps the writing, e.g. ``training_args.main_process_first()`` so that one process writes the
    files under DDP; `generate_kwargs` go to `generate_synthetic_mind`.
    """
    if train_dir is not None:
        return train_dir, dev_dir
    with context or contextlib.nullcontext():
        folders = generate_synthetic_mind(os.path.join(output_dir, "synthetic_mind"), seed=seed, **generate_kwargs)
    logger.info("No train_dir: training on the synthetic MIND-format corpus in %s", folders["train"])
    return folders["train"], dev_dir or folders["dev"]


def _main() -> None:  # pragma: no cover - a convenience for looking at the corpus
    folder = tempfile.mkdtemp(prefix="synthetic-mind-")
    print(generate_synthetic_mind(folder))


if __name__ == "__main__":  # pragma: no cover
    _main()
