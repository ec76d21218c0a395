"""Small corpora in every supported format, written by the tests into their tmp_path (never real data).

Shared by the reader tests (`test_tables`, `test_ebnerd`, `test_xmind`, `test_adressa`) and `test_convert`.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

# ---------------------------------------------------------------------------------------------------- tables

TABLE_ENTITY = {"Label": "Aarhus", "Type": "G", "WikidataId": "Q25319", "Confidence": 1.0, "OccurrenceOffsets": [0],
          "SurfaceForms": ["Aarhus"]}  # fmt: skip


TABLE_NEWS = [
    {"news_id": "N1", "title": "Aarhus vinder", "category": "sport", "sentiment": "Positive", "title_entities": [TABLE_ENTITY]},
    {"news_id": 2, "title": "Regn i morgen", "category": "vejr", "sentiment": None},
    {"news_id": "N3", "title": "Ny bog", "category": "kultur", "subcategory": "bøger", "abstract": "En roman."},
]


TABLE_BEHAVIORS = [
    {"impression_id": 1, "user_id": "U1", "time": "2023-05-01T10:00:00", "history": ["N1"],
     "candidates": [2, "N3"], "clicks": [1, 0]},
    {"impression_id": 2, "user_id": 7, "history": [], "candidates": ["N1", "N3"], "clicks": [0, 1]},
    {"impression_id": 3, "user_id": "U1", "history": ["N1", 2], "candidates": ["N3"]},  # unlabelled
]  # fmt: skip


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n" for row in rows))
    return path


def tables_split(tmp_path: Path, news=TABLE_NEWS, behaviors=TABLE_BEHAVIORS) -> Path:
    write_jsonl(tmp_path / "news.jsonl", news)
    write_jsonl(tmp_path / "behaviors.jsonl", behaviors)
    return tmp_path



# ---------------------------------------------------------------------------------------------------- ebnerd

IDS = pa.list_(pa.int32())


def ebnerd_articles(**overrides) -> pa.Table:
    columns = {
        "article_id": pa.array([1, 2, 3], pa.int32()),
        "title": ["Lars Løkke Rasmussen: Danmark får ny regering", "Regn over Aarhus", "Ny bog"],
        "subtitle": ["Statsministeren taler", None, "En roman"],
        "body": ["...", "...", "..."],
        "category": pa.array([1, 2, 3], pa.int16()),
        "category_str": ["nyheder", "vejr", "kultur"],
        "subcategory": pa.array([[11, 12], [], None], pa.list_(pa.int16())),
        "ner_clusters": [["Lars Løkke Rasmussen", "Løkke", "Danmark", "Dan", "EU"], ["Aarhus"], []],
        "entity_groups": [["PER", "PER", "LOC", "PER", "ORG"], ["LOC"], []],
        "sentiment_score": pa.array([0.9, 0.6, 0.7], pa.float32()),
        "sentiment_label": ["Negative", "Neutral", None],
        "url": ["https://ekstrabladet.dk/1", "https://ekstrabladet.dk/2", "https://ekstrabladet.dk/3"],
    }
    columns.update(overrides)
    return pa.table(columns)


def ebnerd_behaviors(**overrides) -> pa.Table:
    columns = {
        "impression_id": pa.array([10, 11, 12], pa.uint32()),
        "article_id": pa.array([None, 1, None], pa.int32()),
        "impression_time": [dt.datetime(2023, 5, 18, 7, 0, 1), dt.datetime(2023, 5, 18, 8), dt.datetime(2023, 5, 19)],
        "read_time": pa.array([10.0, 5.0, 3.0], pa.float32()),
        "article_ids_inview": pa.array([[1, 2, 3], [2, 3], [3, 1]], IDS),
        "article_ids_clicked": pa.array([[2], [3, 99], [1]], IDS),
        "user_id": pa.array([100, 200, 100], pa.uint32()),
        "is_subscriber": [True, False, True],
    }
    columns.update(overrides)
    return pa.table(columns)


def ebnerd_test_behaviors(**overrides) -> pa.Table:
    """EB-NeRD's test-set shape: no ``article_ids_clicked``; ``is_beyond_accuracy`` rows (impression id 0, one shared
    candidate list) between the ordinary ones, as the real file may hold them."""
    columns = {
        "impression_id": pa.array([10, 0, 11, 0], pa.uint32()),
        "impression_time": [dt.datetime(2023, 6, 1, 7), dt.datetime(2023, 6, 1, 8), dt.datetime(2023, 6, 1, 9),
                            dt.datetime(2023, 6, 1, 10)],
        "article_ids_inview": pa.array([[1, 2, 3], [3, 1, 2], [2, 3], [3, 1, 2]], IDS),
        "user_id": pa.array([100, 200, 100, 100], pa.uint32()),
        "is_beyond_accuracy": [False, True, False, True],
    }
    columns.update(overrides)
    return pa.table(columns)


def ebnerd_history(**overrides) -> pa.Table:
    columns = {
        "user_id": pa.array([100], pa.uint32()),
        "impression_time_fixed": [[dt.datetime(2023, 5, 1), dt.datetime(2023, 5, 2)]],
        "article_id_fixed": pa.array([[3, 1]], IDS),
    }
    columns.update(overrides)
    return pa.table(columns)


def ebnerd_corpus(root: Path, split: str = "train", articles_table=None, behaviors_table=None, history_table=None) -> Path:
    (root / split).mkdir(parents=True, exist_ok=True)
    pq.write_table(ebnerd_articles() if articles_table is None else articles_table, root / "articles.parquet")
    pq.write_table(ebnerd_behaviors() if behaviors_table is None else behaviors_table, root / split / "behaviors.parquet")
    pq.write_table(ebnerd_history() if history_table is None else history_table, root / split / "history.parquet")
    return root / split



# ---------------------------------------------------------------------------------------------------- xmind

ENTITIES = '[{"Label": "Fort Lauderdale, Florida", "Type": "G", "WikidataId": "Q165972", "Confidence": 1.0, "OccurrenceOffsets": [0], "SurfaceForms": ["Fort Lauderdale"]}]'


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(line + "\n" for line in lines).encode("utf-8"))
    return path


def mind_news(news_id: str, category: str = "news", entities: str = "[]") -> str:
    return "\t".join([news_id, category, "sub", "Fort Lauderdale opens an office", "An abstract.",
                      f"https://example.com/{news_id}", entities, "[]"])  # fmt: skip


def xmind_split(tmp_path: Path, translations: list[str], mind: Path | None = None) -> Path:
    mind = tmp_path / "MINDsmall_train" if mind is None else mind
    write_lines(mind / "news.tsv", [mind_news("N1", "news", ENTITIES), mind_news("N2", "sports"), mind_news("N3")])
    write_lines(mind / "behaviors.tsv", ["1\tU1\t11/15/2019 8:55:22 AM\tN1\tN2-1 N3-0", "2\tU2\t11/15/2019 9:00:00 AM\t\tN1-0 N2-1"])
    return write_lines(tmp_path / "xMIND" / "jpn" / "xMINDsmall_train" / "news.tsv", translations).parent


TRANSLATIONS = ["N1\tフォートローダーデールに事務所が開設\t要約。", "N2\t東京で勝利\t", "N3\tタイトル\t要約"]



# ---------------------------------------------------------------------------------------------------- adressa

DAY = 86_400


T0 = 1_483_228_800  # 2017-01-01T00:00:00Z


def adressa_event(user: str, day: int, second: int, article: str | None, **extra) -> dict:
    row = {"userId": user, "time": T0 + day * DAY + second, "eventId": 1, "city": "trondheim"}
    if article is not None:
        row.update(id=article, title=f"Tittel {article}", category1="nyheter|trondheim",
                   canonicalUrl=f"http://adressa.no/{article}")  # fmt: skip
    row.update(extra)
    return row


def write_day_files(folder: Path, days: dict[str, list]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in days.items():
        (folder / name).write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows))
    return folder


def adressa_one_week(tmp_path: Path) -> Path:
    """3 days: day 0 builds histories, day 1 is train, day 2 dev (history_days=1, dev_days=1)."""
    return write_day_files(tmp_path / "one_week", {
        "20170101": [adressa_event("u1", 0, 10, "a1"), adressa_event("u2", 0, 20, "a2"), adressa_event("u1", 0, 30, None)],
        "20170102": [adressa_event("u1", 1, 10, "a3"), adressa_event("u2", 1, 20, "a4"), adressa_event("u3", 1, 30, "a5"),
                     adressa_event("u1", 1, 40, "a1", title="Ny tittel"), adressa_event("u2", 1, 50, "a3", category1="sport")],
        "20170103": [adressa_event("u1", 2, 10, "a6"), adressa_event("u2", 2, 20, "a7"), adressa_event("u3", 2, 30, "a6"),
                     adressa_event("u4", 2, 40, "a6"), adressa_event("u4", 2, 50, "a7")],
    })  # fmt: skip


