"""The MIND leaderboard's ``prediction.txt`` (and ``prediction.zip``) from a ``behaviors.tsv``, every impression
included: `predict_ranks`, `write_prediction_file`, `write_mind_predictions`.

EB-NeRD's (RecSys Challenge 2024) takes the same lines, plus one per ``is_beyond_accuracy`` row of its test set: those
rows share impression id 0 and one candidate list, and come after every other impression, in file order, as the
challenge's own code writes them (ebrec's ``write_submission_file`` over the ordinary predictions concatenated with
the beyond-accuracy ones)."""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..data.ebnerd import read_ebnerd_with_beyond_accuracy
from ..data.formats import detect_format, read_split
from ..data.mind import id_problem, read_behaviors, read_news, require_rows, split_files
from ..data.samples import recent_history
from ..data.stats import LoadStats
from ..models.mtrec.processing_mtrec import entity_field_ids, multi_field_batch, raw_title_batches
from ..scoring import encode_item_batches, score_impressions
from ..vectors import NewsVectorCache

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

    from ..models.mtrec.modeling_mtrec import MTRecModel

logger = logging.getLogger(__name__)

__all__ = [
    "ImpressionPrediction",
    "predict_ranks",
    "ranks_from_scores",
    "write_mind_predictions",
    "write_prediction_file",
]


def ranks_from_scores(scores: Sequence[float] | np.ndarray, known: Sequence[bool] | np.ndarray | None = None) -> list[int]:
    """1-based rank of each candidate, in input order, as MIND's ``prediction.txt`` wants.

    Candidates are ordered by descending score, ties in input order (a stable sort, as `metrics` ranks);
    candidates with ``known=False`` (no news vector) come after every known one, in input order, whatever
    their score. E.g. scores ``[0.1, 0.9, 0.5]`` give ``[3, 1, 2]``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    known = np.ones(scores.shape, dtype=bool) if known is None else np.asarray(known, dtype=bool)
    if scores.ndim != 1 or known.shape != scores.shape:
        raise ValueError(f"scores and known must be 1-D of equal length, got {scores.shape} and {known.shape}")
    if not np.all(np.isfinite(scores[known])):
        raise ValueError("scores of known candidates contain NaN or inf")
    # Unknown candidates get key +inf: after every known one (-score is finite), stable among themselves.
    order = np.argsort(np.where(known, -scores, np.inf), kind="stable")
    ranks = np.empty(scores.size, dtype=np.int64)
    ranks[order] = np.arange(1, scores.size + 1)
    return ranks.tolist()


@dataclass
class ImpressionPrediction:
    """One line of ``prediction.txt``: the impression id and the 1-based rank of each candidate in input order."""

    impression_id: str
    ranks: list[int]

    def __post_init__(self) -> None:
        # MIND's scorer splits each line on whitespace: an empty id or one holding whitespace would break the file.
        problem = id_problem(self.impression_id, "impression id")
        if problem:
            raise ValueError(f"{problem}: it cannot be written to prediction.txt")

    def line(self) -> str:
        """``"<impression_id> [r1,r2,...]"``: MIND's format (its scorer splits on whitespace and JSON-parses)."""
        return f"{self.impression_id} [{','.join(str(r) for r in self.ranks)}]"


def predict_ranks(
    model: MTRecModel,
    cache: NewsVectorCache,
    behaviors: Dataset,
    *,
    batch_size: int = 256,
    stats: LoadStats | None = None,
    device: str | torch.device | None = None,
) -> list[ImpressionPrediction]:
    """Ranks the candidates of EVERY impression of a `read_behaviors` table, in file order.

    Works on the raw ids (not on `build_eval_impressions`, which drops impressions), so the labelled dev split
    and MIND's unlabelled test split (``clicks`` all -1) are handled alike; labels are never read.

    Rules (counted in `stats`, and logged once when `stats` is None):
    - a history id missing from `cache` is dropped (``"unknown_history_ids"``); then the most recent
      ``model.config.max_history_length`` known ids are kept (the model's rule, `MTRecModel.encode_users`, which
      training and evaluation follow too); an empty result gives r_u = 0 (``"empty_history"``), i.e. all known
      candidates score 0 and rank in input order;
    - a candidate id missing from `cache` (``"unknown_candidate_ids"``) gets no score and is ranked after all
      known candidates, unknown ones in input order;
    - an impression with no known candidate (``"impressions_without_known_candidate"``) gets ranks 1..n in
      input order;
    - ties between scores are broken by input order (as `evaluation.metrics` ranks them, so the metrics the package
      reports are MIND's scorer's on this file).
    """
    own_stats = stats is None
    stats = LoadStats() if stats is None else stats
    max_history_length = model.config.max_history_length  # the one source: the model applies it itself
    table = behaviors.select_columns(["impression_id", "history", "candidates"]).with_format(None)[:]
    index = cache.index
    histories: list[list[int]] = []
    candidate_rows: list[list[int]] = []
    known_masks: list[list[bool]] = []
    for history, candidates in zip(table["history"], table["candidates"], strict=True):
        known_history = [index[i] for i in history if i in index]
        if len(known_history) < len(history):
            stats["unknown_history_ids"] += len(history) - len(known_history)
        known_history = recent_history(known_history, max_history_length)
        if not known_history:
            stats["empty_history"] += 1
        known = [i in index for i in candidates]
        if not all(known):
            stats["unknown_candidate_ids"] += known.count(False)
            if not any(known):
                stats["impressions_without_known_candidate"] += 1
        histories.append(known_history)
        # Unknown candidates are scored on row 0 to keep the batch rectangular; their score is ignored.
        candidate_rows.append([index.get(i, 0) for i in candidates])
        known_masks.append(known)
    if len(cache) == 0:
        scores = [np.zeros(len(rows), dtype=np.float32) for rows in candidate_rows]
    else:
        scores = score_impressions(model, cache.vectors, histories, candidate_rows, batch_size=batch_size, device=device)
    predictions = [
        ImpressionPrediction(impression_id, ranks_from_scores(row_scores, known))
        for impression_id, row_scores, known in zip(table["impression_id"], scores, known_masks, strict=True)
    ]
    if own_stats:
        stats.log(logger, "predict_ranks")
    return predictions


def write_prediction_file(
    path: str | os.PathLike[str],
    predictions: Iterable[ImpressionPrediction],
    *,
    zip_file: bool = False,
    beyond_accuracy: Iterable[ImpressionPrediction] = (),
) -> Path:
    """Writes MIND's ``prediction.txt`` (one ``"<impression_id> [r1,r2,...]"`` line per impression, in the given
    order); with ``zip_file=True`` also ``prediction.zip`` beside it (the leaderboard's upload, holding
    ``prediction.txt`` at its root). Returns the path of the zip when written, else of the text file.

    `beyond_accuracy` (EB-NeRD's test set): the ``is_beyond_accuracy`` rows' lines, written after all others in the
    given order. They share one impression id (0), so the check that no impression is predicted twice, which keeps
    the scorer's one-to-one pairing of the other lines, leaves them out: the challenge pairs them by order."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    with open(path, "w", encoding="utf-8") as f:
        for prediction in predictions:
            if prediction.impression_id in seen:  # the scorer pairs lines with the truth file one to one
                raise ValueError(f"impression {prediction.impression_id!r} is predicted twice; {path} is incomplete")
            seen.add(prediction.impression_id)
            f.write(prediction.line() + "\n")
        for prediction in beyond_accuracy:
            f.write(prediction.line() + "\n")
    if not zip_file:
        return path
    zip_path = path.with_suffix(".zip")
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.write(path, arcname="prediction.txt")
    return zip_path


def write_mind_predictions(
    model: MTRecModel,
    tokenizer: PreTrainedTokenizerBase,
    mind_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    batch_size: int = 256,
    zip_file: bool = True,
    cache: NewsVectorCache | None = None,
    lenient: bool = False,
    stats: LoadStats | None = None,
    data_format: str | None = None,
    **format_options: Any,
) -> tuple[Path, NewsVectorCache]:
    """``output_dir/prediction.txt`` (+ ``prediction.zip``) for a MIND folder (dev or unlabelled test), or a split
    folder of another corpus format (`modeling_mtrec.data.formats`): EB-NeRD's leaderboard takes the same
    ``impression_id [r1,...]`` lines, zipped.

    Encodes the folder's news titles once (unless `cache` is given; news of the folder missing from
    a given cache are encoded and added), then ranks every impression of the folder by `predict_ranks`. EB-NeRD's
    test set: its ``is_beyond_accuracy`` rows are ranked too, each for its own user, and written after the other
    impressions in file order, each as ``0 [r1,...]`` (the module docstring: the challenge's convention).
    Returns the written path and the cache (to save with ``cache.save``).

    Args:
        data_format: the folder's format (`DATA_FORMATS`); recognised from its files when None.
        format_options: the format reader's options (`read_split`); Adressa's ``split`` defaults to ``"dev"``.
    """
    own_stats = stats is None
    stats = LoadStats() if stats is None else stats
    data_format = detect_format(mind_dir) if data_format is None else data_format
    beyond = None  # EB-NeRD test set's is_beyond_accuracy rows
    if data_format == "mind":
        news_path, behaviors_path = split_files(mind_dir)
        before = stats.copy()
        news = require_rows(read_news(news_path, lenient=lenient, stats=stats), news_path, "news", dict(stats - before))
    elif data_format == "ebnerd":
        if format_options:
            raise TypeError(f"read_split('ebnerd') takes no option(s) {sorted(format_options)}")
        news, other_behaviors, beyond = read_ebnerd_with_beyond_accuracy(mind_dir, lenient=lenient, stats=stats)
    else:
        if data_format == "adressa":
            format_options.setdefault("split", "dev")
        news, other_behaviors = read_split(mind_dir, data_format, lenient=lenient, stats=stats, **format_options)
    table = news.select_columns(["news_id", "title", "category", "title_entities"]).with_format(None)[:]

    def title_vectors(rows: list[int]) -> torch.Tensor:  # (n,) -> (n, D); news.tsv's missing title is empty
        titles = [table["title"][i] or "" for i in rows]
        batches = raw_title_batches(tokenizer, titles, model.config, batch_size)
        if getattr(model.config, "use_multi_field", False):  # MTRec's multi-field variant: category and entities too
            labels = [model.config.category2id.get(table["category"][i] or "", -100) for i in rows]
            entities = [entity_field_ids(table["title_entities"][i], model.config.num_entity_buckets) for i in rows]
            batches = ((b, {**inputs, **multi_field_batch(labels, entities, b)}) for b, inputs in batches)
        return encode_item_batches(model, batches, len(titles))

    if cache is None:
        cache = NewsVectorCache.for_model(model, table["news_id"], title_vectors(list(range(len(table["news_id"])))))
    else:
        missing = [i for i, news_id in enumerate(table["news_id"]) if news_id not in cache]
        if missing:
            cache.add([table["news_id"][i] for i in missing], title_vectors(missing))
    if data_format == "mind":
        before = stats.copy()
        behaviors = read_behaviors(behaviors_path, lenient=lenient, stats=stats)
        require_rows(behaviors, behaviors_path, "impression", dict(stats - before))
    else:
        behaviors = other_behaviors  # read_split refuses a file without a usable row
    predictions = predict_ranks(
        model, cache, behaviors, batch_size=batch_size, stats=stats
    )
    beyond_predictions = []
    if beyond is not None:
        beyond_predictions = predict_ranks(model, cache, beyond, batch_size=batch_size, stats=stats)
    path = write_prediction_file(
        Path(output_dir) / "prediction.txt", predictions, zip_file=zip_file, beyond_accuracy=beyond_predictions
    )
    if own_stats:
        stats.log(logger, f"{data_format} predictions for {mind_dir}")
    if beyond_predictions:
        logger.info("Wrote %d impression predictions and, after them, %d beyond-accuracy rows to %s",
                    len(predictions), len(beyond_predictions), path)
    else:
        logger.info("Wrote %d impression predictions to %s", len(predictions), path)
    return path, cache
