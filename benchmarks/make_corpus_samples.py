"""Write small EB-NeRD-shaped, xMIND-shaped and Adressa-shaped corpora from a MIND news file, with synthetic behaviors.

    PYTHONPATH=. python benchmarks/make_corpus_samples.py --mind-news ../shared/data/mind_sample/news.tsv \\
        --output ../corpus_samples

The news are MIND's (titles, categories, entities), so the output stays OUTSIDE the repository (MIND's license
forbids committing it; the script refuses a folder inside the checkout). It writes::

    <output>/ebnerd/articles.parquet, train/, validation/            (behaviors.parquet, history.parquet)
    <output>/ebnerd_testset/articles.parquet, test/                  (no article_ids_clicked; 3 beyond-accuracy rows)
    <output>/xmind/MINDsmall_train/, MINDsmall_dev/                  (news.tsv, behaviors.tsv: MIND's format)
    <output>/xmind/xMIND/<lang>/xMINDsmall_train/, xMINDsmall_dev/   (news.tsv: nid, title, abstract; mind -> link)
    <output>/adressa/one_week/20170101 ... 20170107                  (JSON lines of page views)

The behaviors come from one seeded user model shared by the three shapes. Each user prefers two categories and one
sentiment; a news' utility for a user is ``1.5 [category preferred] + w [sentiment preferred]`` (w =
``--sentiment-weight``, 1.5 by default), so clicks depend on the sentiment labels. The labels themselves come from the
title (a small lexicon of negative and positive words; Neutral otherwise), so a news encoder can learn them: an
EB-NeRD-shaped corpus whose ``sentiment_label`` carries signal for the sentiment auxiliary task. Histories are 8-25
clicks; an impression shows 10 random news (none of the history) and the click is drawn by utility
(one click per impression, two in 10% of them); histories are drawn without replacement by softmax(3 utility) over
all news, clicks by softmax(1.5 utility) over an impression's candidates. ``--sentiment-weight 0`` gives a control
corpus whose sentiment labels carry no click signal.

Measured on the default output (seed 0, 600 users): a candidate whose sentiment is the majority sentiment of the user's
history is clicked 21% of the time, another 7%; with ``--sentiment-weight 0`` 10.9% and 11.5% (no signal).

Train and predict on them as the docs say (docs/corpora/*.md), e.g.::

    python train_mtrec.py --train_dir ../corpus_samples/ebnerd/train --dev_dir ../corpus_samples/ebnerd/validation \\
        --data_format ebnerd
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from modeling_mtrec.data.mind import parse_title_entities, read_news  # noqa: E402

SENTIMENTS = ("Positive", "Neutral", "Negative")
# Words that make a MIND title Negative / Positive (checked lower-cased, whole words); Neutral otherwise.
NEGATIVE_WORDS = frozenset(
    "dead dies died death killed kill killing shooting shot crash crashes fire fires arrested arrest charged "
    "lawsuit sued attack attacked injured accident fraud murder police scandal fails failed loses lost worst "
    "warning crisis victims abuse missing war storm flood".split()
)
POSITIVE_WORDS = frozenset(
    "wins win won best love celebrates celebrate record top happy beautiful amazing great new free success "
    "hero heroes gift joy perfect stunning favorite delicious incredible winning award awards inspiring".split()
)
XMIND_LANGUAGES = ("fin",)
HISTORY_SHARPNESS = 3.0  # histories: softmax(3 * utility) over all news, drawn without replacement
CLICK_SHARPNESS = 1.5  # clicks: softmax(1.5 * utility) over the 10 candidates of an impression
ENTITY_GROUPS = {"P": "PER", "O": "ORG", "G": "LOC", "L": "LOC"}


def sentiment_of(title: str) -> str:
    words = {word.strip(".,:;!?'\"()|").lower() for word in title.split()}
    if words & NEGATIVE_WORDS:
        return "Negative"
    if words & POSITIVE_WORDS:
        return "Positive"
    return "Neutral"


class UserModel:
    """Seeded users over the news: two preferred categories and one preferred sentiment each."""

    def __init__(self, categories: list[str], sentiments: list[str], num_users: int, sentiment_weight: float,
                 rng: np.random.Generator) -> None:  # fmt: skip
        self.rng = rng
        names, counts = np.unique(categories, return_counts=True)
        category_index = {name: i for i, name in enumerate(names)}
        self.category = np.array([category_index[c] for c in categories])  # (N,)
        self.sentiment = np.array([SENTIMENTS.index(s) for s in sentiments])  # (N,)
        p = counts / counts.sum()
        self.preferred = np.stack([rng.choice(len(names), size=2, replace=False, p=p) for _ in range(num_users)])
        self.preferred_sentiment = rng.choice(3, size=num_users, p=[0.4, 0.3, 0.3])
        self.weight = sentiment_weight

    def mean_utility(self, user: int, news: np.ndarray) -> np.ndarray:
        liked = np.isin(self.category[news], self.preferred[user]).astype(float)
        mood = (self.sentiment[news] == self.preferred_sentiment[user]).astype(float)
        return 1.5 * liked + self.weight * mood

    def utility(self, user: int, news: np.ndarray) -> np.ndarray:
        return self.mean_utility(user, news) + self.rng.gumbel(size=len(news))

    def history(self, user: int, num_news: int) -> list[int]:
        size = int(self.rng.integers(8, 26))
        # Gumbel top-k of HISTORY_SHARPNESS * utility: sampling without replacement by softmax over all news (at
        # sharpness 1 the noise of thousands of news would hide the preferences).
        scores = HISTORY_SHARPNESS * self.mean_utility(user, np.arange(num_news)) + self.rng.gumbel(size=num_news)
        return [int(i) for i in np.argsort(-scores)[:size]]

    def impression(self, user: int, num_news: int, exclude: set[int], size: int = 10, two_clicks: float = 0.0):
        """``(candidates, clicked positions)``: `size` random news outside `exclude`; the click drawn by softmax."""
        pool = np.setdiff1d(np.arange(num_news), np.fromiter(exclude, dtype=int, count=len(exclude)))
        candidates = self.rng.choice(pool, size=size, replace=False)
        utility = CLICK_SHARPNESS * self.mean_utility(user, candidates)
        probability = np.exp(utility - utility.max())
        probability /= probability.sum()
        clicks = 2 if self.rng.random() < two_clicks else 1
        clicked = self.rng.choice(size, size=clicks, replace=False, p=probability)
        return [int(c) for c in candidates], sorted(int(c) for c in clicked)


def build_sessions(model: UserModel, num_users: int, num_news: int, impressions_per_user: int, two_clicks: float):
    """Per user: history and a list of (day 0..2 for train / validation / test, candidates, clicked positions)."""
    sessions = []
    for user in range(num_users):
        history = model.history(user, num_news)
        shown = []
        for day, count in ((0, impressions_per_user), (1, 1), (2, 1)):
            for _ in range(count):
                shown.append((day, *model.impression(user, num_news, set(history), two_clicks=two_clicks)))
        sessions.append((history, shown))
    return sessions


def write_ebnerd(output: Path, news, sentiments, sessions, rng: np.random.Generator) -> None:
    n = len(news["news_id"])
    categories = sorted(set(news["category"]))
    subcategories = sorted(set(news["subcategory"]))
    clusters, groups = [], []
    for title_entities, abstract_entities in zip(news["title_entities"], news["abstract_entities"]):
        names, types = [], []
        for entity in parse_title_entities(title_entities) + parse_title_entities(abstract_entities):
            for surface in entity.get("SurfaceForms", []):
                if surface not in names:
                    names.append(surface)
                    types.append(ENTITY_GROUPS.get(entity.get("Type"), "MISC"))
        clusters.append(names)
        groups.append(types)
    published = dt.datetime(2023, 5, 1)
    articles = pa.table({
        "article_id": pa.array(range(1, n + 1), pa.int32()),
        "title": news["title"],
        "subtitle": news["abstract"],
        "last_modified_time": [published] * n,
        "premium": [False] * n,
        "body": [""] * n,
        "published_time": [published] * n,
        "image_ids": pa.array([[] for _ in range(n)], pa.list_(pa.int64())),
        "article_type": ["article_default"] * n,
        "url": news["url"],
        "ner_clusters": clusters,
        "entity_groups": groups,
        "topics": pa.array([[] for _ in range(n)], pa.list_(pa.string())),
        "category": pa.array([categories.index(c) for c in news["category"]], pa.int16()),
        "subcategory": pa.array([[subcategories.index(s)] for s in news["subcategory"]], pa.list_(pa.int16())),
        "category_str": news["category"],
        "total_inviews": pa.array([None] * n, pa.int32()),
        "total_pageviews": pa.array([None] * n, pa.int32()),
        "total_read_time": pa.array([None] * n, pa.float32()),
        "sentiment_score": pa.array(rng.uniform(0.5, 1.0, size=n), pa.float32()),
        "sentiment_label": sentiments,
    })  # fmt: skip
    start = dt.datetime(2023, 5, 18, 7)
    for root, splits in ((output / "ebnerd", (("train", 0), ("validation", 1))), (output / "ebnerd_testset", (("test", 2),))):
        root.mkdir(parents=True, exist_ok=True)
        pq.write_table(articles, root / "articles.parquet")
        for split, day in splits:
            rows = {name: [] for name in ("impression_id", "user_id", "impression_time", "article_ids_inview",
                                          "article_ids_clicked", "session_id")}  # fmt: skip
            impression_id = day * 1_000_000
            for user, (_, shown) in enumerate(sessions):
                for shown_day, candidates, clicked in shown:
                    if shown_day != day:
                        continue
                    impression_id += 1
                    rows["impression_id"].append(impression_id)
                    rows["user_id"].append(user + 1)
                    rows["impression_time"].append(start + dt.timedelta(days=day, minutes=impression_id % 600))
                    rows["article_ids_inview"].append([c + 1 for c in candidates])
                    rows["article_ids_clicked"].append([candidates[i] + 1 for i in clicked])
                    rows["session_id"].append(impression_id)
            m = len(rows["impression_id"])
            columns = {
                "impression_id": pa.array(rows["impression_id"], pa.uint32()),
                "article_id": pa.array([None] * m, pa.int32()),
                "impression_time": rows["impression_time"],
                "read_time": pa.array(rng.uniform(1, 60, size=m), pa.float32()),
                "scroll_percentage": pa.array([None] * m, pa.float32()),
                "device_type": pa.array(rng.integers(1, 4, size=m), pa.int8()),
                "article_ids_inview": pa.array(rows["article_ids_inview"], pa.list_(pa.int32())),
                "article_ids_clicked": pa.array(rows["article_ids_clicked"], pa.list_(pa.int32())),
                "user_id": pa.array(rows["user_id"], pa.uint32()),
                "is_sso_user": [False] * m,
                "gender": pa.array([None] * m, pa.int8()),
                "postcode": pa.array([None] * m, pa.int8()),
                "age": pa.array([None] * m, pa.int8()),
                "is_subscriber": [False] * m,
                "session_id": pa.array(rows["session_id"], pa.uint32()),
                "next_read_time": pa.array([None] * m, pa.float32()),
                "next_scroll_percentage": pa.array([None] * m, pa.float32()),
            }
            if split == "test":  # EB-NeRD's test set: no clicks, and beyond-accuracy rows sharing impression id 0
                del columns["article_ids_clicked"]
                columns["is_beyond_accuracy"] = [False] * m
                table = pa.table(columns)
                extra = table.slice(0, 3).to_pydict()
                extra["impression_id"] = [0, 0, 0]
                extra["is_beyond_accuracy"] = [True] * 3
                table = pa.concat_tables([table, pa.table(extra, schema=table.schema)])
            else:
                table = pa.table(columns)
            (root / split).mkdir(exist_ok=True)
            pq.write_table(table, root / split / "behaviors.parquet")
            users = len(sessions)
            pq.write_table(pa.table({
                "user_id": pa.array(range(1, users + 1), pa.uint32()),
                "impression_time_fixed": [[start - dt.timedelta(days=1, minutes=i) for i in range(len(h), 0, -1)]
                                          for h, _ in sessions],
                "scroll_percentage_fixed": pa.array([[None] * len(h) for h, _ in sessions], pa.list_(pa.float32())),
                "article_id_fixed": pa.array([[i + 1 for i in h] for h, _ in sessions], pa.list_(pa.int32())),
                "read_time_fixed": pa.array([[10.0] * len(h) for h, _ in sessions], pa.list_(pa.float32())),
            }), root / split / "history.parquet")  # fmt: skip


def pseudo_translation(text: str, language: str) -> str:
    """Not a translation: each word reversed, so the text keeps its length and its words but no English surface
    form sits at MIND's offsets any more (the point of xMIND for the NER task)."""
    return " ".join(word[::-1] for word in text.split(" ")) if text else text


def write_xmind(output: Path, mind_news: Path, news, sessions) -> None:
    lines = [line for line in mind_news.read_text(encoding="utf-8").splitlines() if line.strip()]
    for split, day, times in (("train", 0, "11/14/2019"), ("dev", 1, "11/15/2019")):
        folder = output / "xmind" / f"MINDsmall_{split}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "news.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        behaviors, impression_id = [], 0
        for user, (history, shown) in enumerate(sessions):
            for shown_day, candidates, clicked in shown:
                if shown_day != day:
                    continue
                impression_id += 1
                tokens = " ".join(f"{news['news_id'][c]}-{int(i in clicked)}" for i, c in enumerate(candidates))
                history_ids = " ".join(news["news_id"][i] for i in history)
                behaviors.append(f"{impression_id}\tU{user + 1}\t{times} 9:{impression_id % 60:02d}:00 AM\t{history_ids}\t{tokens}")
        (folder / "behaviors.tsv").write_text("\n".join(behaviors) + "\n", encoding="utf-8")
        for language in XMIND_LANGUAGES:
            translated = output / "xmind" / "xMIND" / language / f"xMINDsmall_{split}"
            translated.mkdir(parents=True, exist_ok=True)
            rows = [f"{i}\t{pseudo_translation(t, language)}\t{pseudo_translation(a, language)}"
                    for i, t, a in zip(news["news_id"], news["title"], news["abstract"])]  # fmt: skip
            (translated / "news.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
            link = translated / "mind"
            if not link.exists():
                link.symlink_to(os.path.relpath(folder, translated), target_is_directory=True)


def write_adressa(output: Path, news, model: UserModel, sessions, rng: np.random.Generator) -> None:
    """Seven days of page views: history clicks on days 1-5, impression-day clicks (the same users' preferences) on
    days 6 and 7 among 300 news of the day, and 10% front-page views without an article id."""
    folder = output / "adressa" / "one_week"
    folder.mkdir(parents=True, exist_ok=True)
    start = int(dt.datetime(2017, 1, 1, tzinfo=dt.timezone.utc).timestamp())
    n = len(news["news_id"])
    ids = [hashlib.sha1(news_id.encode()).hexdigest() for news_id in news["news_id"]]
    days: list[list[tuple[int, str]]] = [[] for _ in range(7)]

    def view(user: int, day: int, row: int | None) -> None:
        second = start + day * 86_400 + int(rng.integers(0, 86_400))
        event = {"eventId": int(rng.integers(1, 2**31)), "userId": f"cx:{user + 1:06d}", "time": second,
                 "city": "trondheim", "deviceType": "Mobile"}  # fmt: skip
        if row is not None:
            event.update(id=ids[row], title=news["title"][row], canonicalUrl=f"http://adressa.no/{ids[row][:12]}",
                         category1=f"{news['category'][row]}|{news['subcategory'][row]}")  # fmt: skip
        days[day].append((second, json.dumps(event, ensure_ascii=False)))

    for user, (history, _) in enumerate(sessions):
        for row in history:
            view(user, int(rng.integers(0, 5)), row)
        for day in (5, 6):
            of_day = rng.choice(n, size=min(300, n), replace=False)
            scores = model.utility(user, of_day)
            for row in of_day[np.argsort(-scores)[: int(rng.integers(1, 4))]]:
                view(user, day, int(row))
            if rng.random() < 0.1:
                view(user, day, None)
    for day, events in enumerate(days):
        (folder / f"201701{day + 1:02d}").write_text("".join(line + "\n" for _, line in sorted(events)), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mind-news", required=True, help="a MIND news.tsv (read only), e.g. ../shared/data/mind_sample/news.tsv")
    parser.add_argument("--output", required=True, help="a folder OUTSIDE the repository")
    parser.add_argument("--users", type=int, default=600)
    parser.add_argument("--impressions-per-user", type=int, default=4, help="train impressions per user")
    parser.add_argument("--sentiment-weight", type=float, default=1.5, help="0: sentiment carries no click signal")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    output = Path(args.output).resolve()
    if output == REPO_ROOT or REPO_ROOT in output.parents:
        parser.error(f"{output} is inside the repository: MIND's license forbids committing its news; write elsewhere")
    rng = np.random.default_rng(args.seed)
    news = read_news(args.mind_news).to_dict()
    sentiments = [sentiment_of(title) for title in news["title"]]
    model = UserModel(news["category"], sentiments, args.users, args.sentiment_weight, rng)
    sessions = build_sessions(model, args.users, len(sentiments), args.impressions_per_user, two_clicks=0.1)
    write_ebnerd(output, news, sentiments, sessions, rng)
    write_xmind(output, Path(args.mind_news), news, sessions)
    write_adressa(output, news, model, sessions, rng)
    counts = {s: sentiments.count(s) for s in SENTIMENTS}
    print(f"{len(sentiments)} news (sentiment {counts}), {args.users} users -> {output}/{{ebnerd,ebnerd_testset,xmind,adressa}}")


if __name__ == "__main__":
    main()
