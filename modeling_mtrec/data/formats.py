"""One entry to every corpus format: recognise a split folder's format from its files, and read it into the neutral
news and behaviors tables (`modeling_mtrec.data.tables`) that the loaders consume.

=========== ======================================================================= ===============================
format      a split folder holds                                                    reader
=========== ======================================================================= ===============================
``mind``    ``news.tsv`` (8 columns) and ``behaviors.tsv``                           `read_news`, `read_behaviors`
``xmind``   ``news.tsv`` (3 columns: the translation) and MIND's split as ``mind/``  `read_xmind`
            (or ``mind_dir=``)
``ebnerd``  ``behaviors.parquet`` and ``history.parquet`` (``articles.parquet`` in   `read_ebnerd`
            the folder or its parent)
``adressa`` day files of JSON events (``20170101``, ...; or ``*.json[l]``)           `read_adressa` (``split=``, ...)
``tables``  ``news.{parquet,jsonl}`` and ``behaviors.{parquet,jsonl}``               `read_tables`
=========== ======================================================================= ===============================

Which auxiliary labels a corpus can give (`label_report`): category wherever news have one; NER where titles carry
entity offsets (MIND, EB-NeRD's located ``ner_clusters``, own tables that give them; never xMIND nor Adressa);
sentiment where the news table has a ``sentiment`` column (EB-NeRD, own tables).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from datasets import Dataset

from .adressa import adressa_files, read_adressa
from .ebnerd import read_ebnerd
from .mind import read_behaviors, read_news, require_rows, split_files
from .stats import LoadStats
from .tables import read_tables
from .xmind import read_xmind

logger = logging.getLogger(__name__)

__all__ = ["DATA_FORMATS", "detect_format", "label_report", "read_split"]

DATA_FORMATS: tuple[str, ...] = ("mind", "xmind", "ebnerd", "adressa", "tables")


def _tsv_columns(path: Path) -> int:
    """The number of tab-separated columns of the first non-empty line of `path` (0 when none)."""
    with open(path, "rb") as f:
        for raw in f:
            line = raw.decode("utf-8", errors="replace").removeprefix("\ufeff").rstrip("\r\n")
            if line:
                return len(line.split("\t"))
    return 0


def _is_adressa(folder: Path) -> bool:
    try:
        files = adressa_files(folder)
    except FileNotFoundError:
        return False
    with open(files[0], "rb") as f:
        for raw in f:
            line = raw.strip()
            if line:
                try:
                    event = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    return False
                return isinstance(event, dict) and "userId" in event
    return False


def detect_format(folder: str | os.PathLike) -> str:
    """The format of a split folder (one of `DATA_FORMATS`), recognised from its files as the module docstring's
    table says. `FileNotFoundError` when the folder is missing; `ValueError` naming what was looked for when no format
    fits."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    names = {path.name for path in folder.iterdir()}
    if {"behaviors.parquet", "history.parquet"} <= names:
        return "ebnerd"
    if names & {"news.parquet", "news.jsonl"} and names & {"behaviors.parquet", "behaviors.jsonl"}:
        return "tables"
    if "news.tsv" in names:
        columns = _tsv_columns(folder / "news.tsv")
        if columns == 3:
            return "xmind"
        if "behaviors.tsv" in names:
            return "mind"
    if _is_adressa(folder):
        return "adressa"
    raise ValueError(
        f"{folder}: no known corpus format (found {sorted(names)[:10]}). Expected MIND (news.tsv, behaviors.tsv), "
        "xMIND (a 3-column news.tsv), EB-NeRD (behaviors.parquet, history.parquet), Adressa (day files of JSON "
        "events) or the package's tables (news.parquet|jsonl, behaviors.parquet|jsonl); or pass data_format="
    )


def read_split(
    folder: str | os.PathLike,
    data_format: str | None = None,
    lenient: bool = False,
    stats: LoadStats | None = None,
    **options: Any,
) -> tuple[Dataset, Dataset]:
    """Read one split folder of any supported corpus into ``(news, behaviors)``: the tables `read_news` and
    `read_behaviors` produce for MIND (plus a ``sentiment`` news column where the corpus has one).

    Args:
        folder: the split folder (see the module docstring's table).
        data_format: one of `DATA_FORMATS`; recognised from the files when None (`detect_format`).
        lenient: skip and count bad rows in `stats` instead of raising `MINDFormatError` (naming file and row).
        stats: where to count problems; when None a local `LoadStats` is logged at the end.
        **options: format-specific options: ``mind_dir`` (xmind); ``split``, ``history_days``, ``dev_days``,
            ``num_negatives``, ``seed`` (adressa). Any other raises `TypeError`.

    Raises:
        MINDFormatError: a bad row (not lenient), a missing column, or a file without a usable row.
        FileNotFoundError: a file the format needs is missing.
        ValueError: an unknown `data_format`, or a folder whose format is not recognised.
    """
    data_format = detect_format(folder) if data_format is None else data_format
    if data_format not in DATA_FORMATS:
        raise ValueError(f"unknown data_format {data_format!r}; known: {DATA_FORMATS}")
    own_stats = stats is None
    stats = LoadStats() if stats is None else stats
    allowed = {"xmind": {"mind_dir"}, "adressa": {"split", "history_days", "dev_days", "num_negatives", "seed"}}
    unknown = set(options) - allowed.get(data_format, set())
    if unknown:
        raise TypeError(f"read_split({data_format!r}) takes no option(s) {sorted(unknown)}")
    if data_format == "mind":
        news_path, behaviors_path = split_files(folder)
        before = stats.copy()
        news = require_rows(read_news(news_path, lenient=lenient, stats=stats), news_path, "news", dict(stats - before))
        before = stats.copy()
        behaviors = read_behaviors(behaviors_path, lenient=lenient, stats=stats)
        behaviors = require_rows(behaviors, behaviors_path, "behaviors", dict(stats - before))
    elif data_format == "xmind":
        news, behaviors = read_xmind(folder, lenient=lenient, stats=stats, **options)
    elif data_format == "ebnerd":
        news, behaviors = read_ebnerd(folder, lenient=lenient, stats=stats)
    elif data_format == "adressa":
        news, behaviors = read_adressa(folder, lenient=lenient, stats=stats, **options)
    else:
        news, behaviors = read_tables(folder, lenient=lenient, stats=stats)
    if own_stats:
        stats.log(logger, f"read_split({folder}, {data_format!r})")
    return news, behaviors


def label_report(news: Dataset, data_format: str | None = None) -> dict[str, str]:
    """For each auxiliary task (``category``, ``ner``, ``sentiment``): ``"on"``, or why its labels are absent, for the
    load report. Decided from the news table (a task is on when some news carries its label); `data_format` only
    sharpens the reason.

    Example: an xMIND table gives ``{"category": "on", "ner": "off: xMIND titles are machine translations; MIND's
    entity offsets do not carry over", "sentiment": "off: the corpus has no sentiment labels"}``.
    """
    report = {}
    categories = news.data.table.column("category").to_pylist() if "category" in news.column_names else []
    report["category"] = "on" if any(c and c.strip() for c in categories) else "off: no news has a category"
    entities = news.data.table.column("title_entities").to_pylist() if "title_entities" in news.column_names else []
    if any(e and e.strip() not in ("", "[]") for e in entities):
        report["ner"] = "on"
    else:
        report["ner"] = {
            "xmind": "off: xMIND titles are machine translations; MIND's entity offsets do not carry over",
            "adressa": "off: Adressa gives no entity offsets",
            "ebnerd": "off: no ner_cluster was found in any title",
        }.get(data_format or "", "off: no title has entity annotations")
    sentiment = news.data.table.column("sentiment").to_pylist() if "sentiment" in news.column_names else []
    report["sentiment"] = "on" if any(sentiment) else "off: the corpus has no sentiment labels"
    return report
