"""Fast evaluation, MIND leaderboard predictions and an application API over cached news vectors.

MTRec scores a candidate as s_j = r_j . r_u (Bi et al., Findings of ACL 2022, Sec. 3.1), and r_j depends on the
news title only. Every news vector can therefore be computed ONCE and reused by every impression that mentions
the news, in a history or as a candidate. The Trainer's default prediction loop ("the slow path") instead
re-encodes, batch after batch, every distinct news of the batch's impressions with BERT; on MIND a news is
mentioned by hundreds of impressions, so nearly all of that work is repeated.

This module holds:

* `NewsVectorCache`: the [CLS] vectors of a news table, encoded once, saved/loaded as safetensors with a
  fingerprint of the news encoder so that a stale cache is detected.
* `fast_evaluate`: AUC / MRR / nDCG@5 / nDCG@10 over `build_eval_impressions` rows from the cache; each
  impression costs one user-encoder pass and a dot product. The metric definitions are those of
  `modeling_mtrec.metrics` (the slow path's), so both paths give the same numbers.
* `predict_ranks` / `write_prediction_file` / `write_mind_predictions`: the MIND leaderboard's
  ``prediction.txt`` (and ``prediction.zip``) from a ``behaviors.tsv``, every impression included.
* `MTRecRecommender`: ``from_pretrained(folder)``, ``add_news(ids, titles)``, ``recommend(history, candidates)``
  with news ids or raw titles (`NewsTitle`).

NOTE: the fast path runs the model in eval mode (no dropout), as the slow path does; the user vector and scores
are the model's own `encode_user` and `score`, so the fast path adds no model code of its own.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .data.stats import LoadStats
from .metrics import impression_metrics

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

    from .modeling_mtrec import MTRecModel

logger = logging.getLogger(__name__)

__all__ = [
    "ImpressionPrediction",
    "MTRecRecommender",
    "NewsTitle",
    "NewsVectorCache",
    "StaleCacheError",
    "encode_titles",
    "fast_evaluate",
    "impression_scores",
    "news_encoder_fingerprint",
    "predict_ranks",
    "Recommendation",
    "ranks_from_scores",
    "write_mind_predictions",
    "write_prediction_file",
]

_CACHE_FORMAT = "mtrec-news-vectors/1"
# Config entries that do not change the news vectors (bookkeeping; a save/load round trip fills in `dtype`).
_CONFIG_KEYS_WITHOUT_EFFECT = frozenset(
    {"dtype", "torch_dtype", "transformers_version", "architectures", "name_or_path", "return_dict",
     "output_hidden_states", "output_attentions", "use_cache", "id2label", "label2id"}
)


class StaleCacheError(ValueError):
    """A `NewsVectorCache` built by a different news encoder (other weights or config) than the model given."""


# ------------------------------------------------------------------------------------------------ encoding


def news_encoder_fingerprint(model: MTRecModel) -> str:
    """A 16-hex-digit hash of everything a news vector depends on: the news encoder's config and weights.

    The user encoder and the heads are left out on purpose: they do not change r_j, so a cache stays valid
    when only they change. Hashing the weights (not only the config) is what catches a cache written before
    training against the trained model; it costs ~0.1 s for a 6-layer MiniLM.
    """
    hasher = hashlib.sha256()
    config = {
        key: value
        for key, value in model.news_encoder.config.to_dict().items()
        if not key.startswith("_") and key not in _CONFIG_KEYS_WITHOUT_EFFECT
    }
    hasher.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.news_encoder.state_dict().items()):
        hasher.update(name.encode())
        hasher.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return hasher.hexdigest()[:16]


def _pad_token_id(model: MTRecModel) -> int:
    pad = getattr(model.config.encoder_config, "pad_token_id", None)
    return 0 if pad is None else int(pad)


@torch.no_grad()
def _encode_token_lists(
    model: MTRecModel,
    token_lists: Sequence[Sequence[int]],
    batch_size: int,
    device: torch.device,
    sort_by_length: bool = True,
) -> torch.Tensor:
    """[CLS] vectors of unpadded token id lists, in input order. (N lists) -> (N, D) float32 on CPU.

    With `sort_by_length` the lists are encoded sorted by length so that a batch pads to nearly its own length:
    titles vary from a few to `max_title_length` tokens, and padding every title to the longest wastes up to
    half of BERT's work. Padded positions are masked, so the padding width changes a vector only by float32
    rounding (~1e-7 relative: other matrix shapes, other summation order). Without it, every batch is padded to
    the longest title of all, as the slow path's batches nearly always are (a batch of a thousand titles holds
    one of `max_title_length` tokens), which reproduces the slow path's vectors bit for bit in that case.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pad = _pad_token_id(model)
    order = list(range(len(token_lists)))
    longest = max((len(tokens) for tokens in token_lists), default=0)
    if sort_by_length:
        order.sort(key=lambda i: len(token_lists[i]))
    out = torch.zeros(len(token_lists), model.config.hidden_size, dtype=torch.float32)  # (N, D)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = max(len(token_lists[i]) for i in rows) if sort_by_length else longest
        if width == 0:
            raise ValueError(f"news {rows[0]} has no tokens (an empty title still has [CLS] [SEP])")
        ids = torch.full((len(rows), width), pad, dtype=torch.long)  # (b, L)
        mask = torch.zeros((len(rows), width), dtype=torch.long)  # (b, L)
        for j, i in enumerate(rows):
            tokens = token_lists[i]
            ids[j, : len(tokens)] = torch.as_tensor(tokens, dtype=torch.long)
            mask[j, : len(tokens)] = 1
        vectors = model.encode_news(ids.to(device), mask.to(device))  # (b, L) -> (b, D)
        out[torch.as_tensor(rows)] = vectors.float().cpu()
    return out


class _EvalMode:
    """Puts a model in eval mode for a block and restores its previous mode (the Trainer may be mid-training)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model, self.was_training = model, model.training

    def __enter__(self) -> None:
        self.model.eval()

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)


def _model_device(model: torch.nn.Module, device: str | torch.device | None) -> torch.device:
    return torch.device(device) if device is not None else next(model.parameters()).device


def encode_titles(
    model: MTRecModel,
    tokenizer: PreTrainedTokenizerBase,
    titles: Sequence[str],
    max_length: int | None = None,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """News vectors of raw titles. (N titles) -> (N, D) float32 on CPU.

    Titles are tokenised exactly as `tokenize_news` does (``truncation=True, max_length=max_title_length``,
    [CLS] ... [SEP], no padding), so a title gives the same vector here as through a tokenised news table.

    Args:
        max_length: tokens per title, [CLS]/[SEP] included; defaults to ``model.config.max_title_length``.
    """
    max_length = model.config.max_title_length if max_length is None else max_length
    titles = [title or "" for title in titles]
    if not titles:
        return torch.zeros(0, model.config.hidden_size)
    token_lists = tokenizer(titles, truncation=True, max_length=max_length)["input_ids"]
    with _EvalMode(model):
        return _encode_token_lists(model, token_lists, batch_size, _model_device(model, device))


# ------------------------------------------------------------------------------------------------ the cache


def _encode_news_table(
    model: MTRecModel,
    news: Dataset,
    batch_size: int,
    device: str | torch.device | None,
    sort_by_length: bool = True,
) -> tuple[list[str], torch.Tensor]:
    """(news ids, (N, D) vectors) of every row of a tokenised news table; ids default to the row numbers."""
    if "input_ids" not in news.column_names:
        raise ValueError(f"the news table lacks input_ids (has {news.column_names}); build it with tokenize_news")
    columns = ["input_ids"] + (["news_id"] if "news_id" in news.column_names else [])
    table = news.select_columns(columns).with_format(None)[:]
    news_ids = table.get("news_id") or [str(row) for row in range(len(table["input_ids"]))]
    with _EvalMode(model):
        vectors = _encode_token_lists(model, table["input_ids"], batch_size, _model_device(model, device), sort_by_length)
    return news_ids, vectors


class NewsVectorCache:
    """News vectors r_j of a set of news, encoded once, addressable by news id or by row.

    Attributes:
        news_ids (`list[str]`): the news ids, row order of `vectors`.
        vectors (`torch.Tensor` of shape `(N, D)`, float32, CPU): row i is the vector of ``news_ids[i]``.
        index (`dict[str, int]`): news id -> row.
        fingerprint (`str` or `None`): `news_encoder_fingerprint` of the model that encoded the vectors.
        max_title_length (`int` or `None`): title length the news were tokenised to.

    Build it with `from_model` (a tokenised news table), `from_titles` (raw titles), extend it with `add`,
    persist it with `save` / `load` (one safetensors file; ids and fingerprint in its metadata).
    """

    def __init__(
        self,
        news_ids: Sequence[str],
        vectors: torch.Tensor,
        *,
        fingerprint: str | None = None,
        max_title_length: int | None = None,
    ) -> None:
        if vectors.ndim != 2 or vectors.shape[0] != len(news_ids):
            raise ValueError(f"vectors must be (len(news_ids)={len(news_ids)}, D), got {tuple(vectors.shape)}")
        self.news_ids: list[str] = [str(news_id) for news_id in news_ids]
        self.index: dict[str, int] = {news_id: row for row, news_id in enumerate(self.news_ids)}
        if len(self.index) != len(self.news_ids):
            seen: set[str] = set()
            duplicate = next(i for i in self.news_ids if i in seen or seen.add(i))
            raise ValueError(f"news id {duplicate!r} appears twice in the cache")
        self.vectors = vectors.detach().to("cpu", torch.float32).contiguous()  # (N, D)
        self.fingerprint = fingerprint
        self.max_title_length = max_title_length

    def __len__(self) -> int:
        return len(self.news_ids)

    def __contains__(self, news_id: object) -> bool:
        return news_id in self.index

    def __repr__(self) -> str:
        return f"NewsVectorCache({len(self)} news, dim={self.vectors.shape[1]}, fingerprint={self.fingerprint})"

    @property
    def hidden_size(self) -> int:
        return self.vectors.shape[1]

    # ---- building

    @classmethod
    def from_model(
        cls,
        model: MTRecModel,
        news: Dataset,
        *,
        batch_size: int = 256,
        device: str | torch.device | None = None,
        sort_by_length: bool = True,
    ) -> NewsVectorCache:
        """Encodes every row of a tokenised news table (`tokenize_news` / `MINDCorpus.news`) once.

        Row i of the cache is row i of `news`. The ids come from its ``news_id`` column; a table without one
        (e.g. built by hand) gets the row numbers as ids (``"0"``, ``"1"``, ...). `sort_by_length` (default)
        batches titles of similar length, about twice as fast; ``False`` pads every title to the longest one,
        which reproduces the slow path's float rounding exactly (see `_encode_token_lists`).
        """
        news_ids, vectors = _encode_news_table(model, news, batch_size, device, sort_by_length)
        return cls(
            news_ids,
            vectors,
            fingerprint=news_encoder_fingerprint(model),
            max_title_length=model.config.max_title_length,
        )

    @classmethod
    def from_titles(
        cls,
        model: MTRecModel,
        tokenizer: PreTrainedTokenizerBase,
        news_ids: Sequence[str],
        titles: Sequence[str],
        *,
        batch_size: int = 256,
        device: str | torch.device | None = None,
    ) -> NewsVectorCache:
        """Encodes raw titles (tokenised as `tokenize_news` does) under the given ids."""
        if len(news_ids) != len(titles):
            raise ValueError(f"got {len(news_ids)} news ids but {len(titles)} titles")
        vectors = encode_titles(model, tokenizer, titles, batch_size=batch_size, device=device)
        return cls(
            news_ids,
            vectors,
            fingerprint=news_encoder_fingerprint(model),
            max_title_length=model.config.max_title_length,
        )

    def add(self, news_ids: Sequence[str], vectors: torch.Tensor) -> None:
        """Adds (or overwrites) news vectors. (len(news_ids), D)."""
        if vectors.ndim != 2 or vectors.shape != (len(news_ids), self.hidden_size):
            raise ValueError(f"vectors must be ({len(news_ids)}, {self.hidden_size}), got {tuple(vectors.shape)}")
        if len(set(news_ids)) != len(news_ids):
            raise ValueError("news ids passed to one add() call must be distinct")
        vectors = vectors.detach().to("cpu", torch.float32)
        fresh: list[int] = []
        for i, news_id in enumerate(news_ids):
            row = self.index.get(news_id)
            if row is None:
                self.index[news_id] = len(self.news_ids)
                self.news_ids.append(news_id)
                fresh.append(i)
            else:
                self.vectors[row] = vectors[i]
        if fresh:
            self.vectors = torch.cat([self.vectors, vectors[fresh]])  # (N + new, D)

    # ---- lookup

    def rows(self, news_ids: Iterable[str]) -> list[int]:
        """Rows of the given ids; `KeyError` naming the first unknown id."""
        rows = []
        for news_id in news_ids:
            row = self.index.get(news_id)
            if row is None:
                raise KeyError(f"news id {news_id!r} is not in the news vector cache ({len(self)} news)")
            rows.append(row)
        return rows

    def lookup(self, news_ids: Iterable[str]) -> torch.Tensor:
        """Vectors of the given ids. (n,) -> (n, D); `KeyError` naming the first unknown id."""
        return self.vectors[torch.as_tensor(self.rows(news_ids), dtype=torch.long)]

    def aligned_to(self, news: Dataset) -> torch.Tensor:
        """Vectors in the row order of a tokenised news table, matched by ``news_id``. (len(news), D).

        Used when a cache was saved earlier (possibly from another table holding these news) and the impressions
        point at rows of `news`. A table without a ``news_id`` column must have exactly the cache's rows.
        """
        if "news_id" not in news.column_names:
            if len(news) != len(self):
                raise ValueError(f"a news table without news_id must have the cache's {len(self)} rows, got {len(news)}")
            return self.vectors
        ids = news.data.column("news_id").to_pylist()
        if ids == self.news_ids:
            return self.vectors
        return self.lookup(ids)

    # ---- persistence and staleness

    def check(self, model: MTRecModel, *, strict: bool = True) -> None:
        """Raises `StaleCacheError` (or, with ``strict=False``, logs a warning) if `model`'s news encoder differs
        from the one that built the cache: its vectors would then not be the model's r_j."""
        expected = news_encoder_fingerprint(model)
        if self.fingerprint == expected and self.hidden_size == model.config.hidden_size:
            return
        message = (
            f"the news vector cache was built by a news encoder with fingerprint {self.fingerprint} "
            f"(dim {self.hidden_size}), but the model's is {expected} (dim {model.config.hidden_size}): "
            "the weights or config changed since it was written. Rebuild it with "
            "NewsVectorCache.from_model(model, news)."
        )
        if strict:
            raise StaleCacheError(message)
        logger.warning("%s Using it anyway (strict=False).", message)

    def save(self, path: str | os.PathLike[str]) -> None:
        """One safetensors file: tensor ``vectors (N, D)``; metadata ``format``, ``news_ids`` (JSON list),
        ``fingerprint`` and ``max_title_length``."""
        metadata = {
            "format": _CACHE_FORMAT,
            "news_ids": json.dumps(self.news_ids),
            "fingerprint": self.fingerprint or "",
            "max_title_length": str(self.max_title_length or ""),
        }
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        save_file({"vectors": self.vectors}, os.fspath(path), metadata=metadata)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], model: MTRecModel | None = None, *, strict: bool = True
    ) -> NewsVectorCache:
        """Loads a cache written by `save`; with `model`, checks it was built by that model's news encoder
        (`check`: `StaleCacheError`, or a warning with ``strict=False``)."""
        from safetensors import safe_open

        with safe_open(os.fspath(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        if metadata.get("format") != _CACHE_FORMAT:
            raise ValueError(f"{path}: not a news vector cache (metadata format {metadata.get('format')!r})")
        tensors = load_file(os.fspath(path))
        cache = cls(
            json.loads(metadata["news_ids"]),
            tensors["vectors"],
            fingerprint=metadata.get("fingerprint") or None,
            max_title_length=int(metadata["max_title_length"]) if metadata.get("max_title_length") else None,
        )
        if model is not None:
            cache.check(model, strict=strict)
        return cache


# ----------------------------------------------------------------------------------------- fast evaluation


def _pad_rows(rows: Sequence[Sequence[int]], min_width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pads lists of row numbers with 0 / mask False. -> index (B, W), mask (B, W)."""
    width = max(min_width, max((len(r) for r in rows), default=0))
    index = torch.zeros(len(rows), width, dtype=torch.long)  # (B, W)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)  # (B, W)
    for b, r in enumerate(rows):
        if r:
            index[b, : len(r)] = torch.as_tensor(r, dtype=torch.long)
            mask[b, : len(r)] = True
    return index, mask


@torch.no_grad()
def _score_rows(
    model: MTRecModel,
    vectors: torch.Tensor,
    histories: Sequence[Sequence[int]],
    candidates: Sequence[Sequence[int]],
    batch_size: int,
    device: torch.device,
) -> list[np.ndarray]:
    """Click scores of each impression's candidates from cached vectors; one float32 array per impression.

    Impressions are scored `batch_size` at a time: histories and candidates padded to the batch's longest,
    user vectors from the model's `encode_user` (masked: padding has zero attention weight), scores from
    `score`. Nothing loops per candidate.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    table = vectors.to(device)  # (N, D)
    scores: list[np.ndarray] = []
    with _EvalMode(model):
        for start in range(0, len(histories), batch_size):
            history_index, history_mask = _pad_rows(histories[start : start + batch_size], min_width=1)  # (B, H)
            candidate_index, _ = _pad_rows(candidates[start : start + batch_size], min_width=1)  # (B, C)
            history = table[history_index.to(device)].to(model.dtype)  # (B, H, D)
            user = model.encode_user(history, history_mask.to(device))  # (B, H, D) -> (B, D)
            logits = model.score(user, table[candidate_index.to(device)].to(model.dtype))  # (B, C, D).(B, D) -> (B, C)
            logits = logits.float().cpu().numpy()
            for b, row in enumerate(candidates[start : start + batch_size]):
                scores.append(logits[b, : len(row)].copy())
    return scores


def impression_scores(
    model: MTRecModel,
    news: Dataset | None,
    impressions: Dataset,
    *,
    batch_size: int = 256,
    cache: NewsVectorCache | None = None,
    device: str | torch.device | None = None,
) -> list[np.ndarray]:
    """Click scores of every impression's candidates (one float32 array per impression, candidate order).

    Arguments as `fast_evaluate`, which ranks these scores; ``impressions`` needs ``history`` and
    ``candidates`` (rows of `news`).
    """
    device = _model_device(model, device)
    if cache is None:
        if news is None:
            raise ValueError("impression_scores needs the news table or a cache")
        # Vectors only: a throw-away cache would also hash every encoder weight for its fingerprint.
        _, vectors = _encode_news_table(model, news, batch_size, device)
    else:
        vectors = cache.vectors if news is None else cache.aligned_to(news)
    table = impressions.select_columns(["history", "candidates"]).with_format(None)[:]
    num_news = vectors.shape[0]
    for column in ("history", "candidates"):
        top = max((max(r) for r in table[column] if r), default=-1)
        if top >= num_news:
            raise ValueError(f"impression {column} row {top} is out of range for {num_news} news vectors")
    return _score_rows(model, vectors, table["history"], table["candidates"], batch_size, device)


def fast_evaluate(
    model: MTRecModel,
    news: Dataset | None,
    impressions: Dataset,
    *,
    batch_size: int = 256,
    cache: NewsVectorCache | None = None,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """MIND metrics of `model` over `build_eval_impressions` rows, from news vectors encoded once.

    Same numbers as the slow path (`MTRecTrainer` with ``fast_eval=False``): the same impressions, the same
    scores up to float32 rounding, and the same metric functions (`impression_metrics`); impressions without
    a click or a non-click are skipped and counted alike.

    NOTE: the cache's length-sorted batches pad titles to other widths than the slow path's batches, which
    changes scores by float32 rounding (~1e-7 relative). Two candidates whose scores are closer than that (an
    untrained model can score many candidates within 1e-5 of each other) may then swap ranks, moving a metric
    in its 5th decimal; build the cache with ``NewsVectorCache.from_model(..., sort_by_length=False)`` to
    reproduce the slow path bit for bit (about 2.5x slower to build; see benchmarks/results/eval_speed.md).

    Args:
        model: an `MTRecModel`; put in eval mode for the call, its previous mode restored afterwards.
        news: the tokenised news table the impressions' rows point into (`MINDCorpus.news`). May be ``None``
            when `cache` was built from that same table (rows aligned).
        impressions: rows with ``history`` and ``candidates`` (rows of `news`) and ``labels`` (1/0).
        batch_size: impressions per user-encoder pass (and titles per BERT pass when building the cache).
        cache: news vectors to use instead of encoding `news`; matched to `news` by ``news_id``. Its
            fingerprint is NOT checked here (that costs a hash of the encoder weights); use
            `NewsVectorCache.load(path, model)` or `cache.check(model)`.
        device: where to run; defaults to the model's device.

    Returns:
        ``{"auc", "mrr", "ndcg@5", "ndcg@10", "num_impressions", "num_skipped_impressions"}``, as
        `impression_metrics` (no loss: the auxiliary losses need per-token states that the cache does not keep).
    """
    scores = impression_scores(model, news, impressions, batch_size=batch_size, cache=cache, device=device)
    return impression_metrics(impressions.select_columns(["labels"]).with_format(None)[:]["labels"], scores)


# --------------------------------------------------------------------------------- leaderboard predictions


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

    def line(self) -> str:
        """``"<impression_id> [r1,r2,...]"``: MIND's format (its scorer splits on whitespace and JSON-parses)."""
        return f"{self.impression_id} [{','.join(str(r) for r in self.ranks)}]"


def predict_ranks(
    model: MTRecModel,
    cache: NewsVectorCache,
    behaviors: Dataset,
    *,
    max_history_length: int | None = None,
    batch_size: int = 256,
    stats: LoadStats | None = None,
    device: str | torch.device | None = None,
) -> list[ImpressionPrediction]:
    """Ranks the candidates of EVERY impression of a `read_behaviors` table, in file order.

    Works on the raw ids (not on `build_eval_impressions`, which drops impressions), so the labelled dev split
    and MIND's unlabelled test split (``clicks`` all -1) are handled alike; labels are never read.

    Rules (counted in `stats`, and logged once when `stats` is None):
    - a history id missing from `cache` is dropped (``"unknown_history_ids"``); then the most recent
      `max_history_length` known ids are kept (as `build_eval_impressions` does); an empty result gives r_u = 0
      (``"empty_history"``), i.e. all known candidates score 0 and rank in input order;
    - a candidate id missing from `cache` (``"unknown_candidate_ids"``) gets no score and is ranked after all
      known candidates, unknown ones in input order;
    - an impression with no known candidate (``"impressions_without_known_candidate"``) gets ranks 1..n in
      input order;
    - ties between scores are broken by input order.

    Args:
        max_history_length: defaults to ``model.config.max_history_length``.
    """
    own_stats = stats is None
    stats = LoadStats() if stats is None else stats
    max_history_length = model.config.max_history_length if max_history_length is None else max_history_length
    table = behaviors.select_columns(["impression_id", "history", "candidates"]).with_format(None)[:]
    index = cache.index
    histories: list[list[int]] = []
    candidate_rows: list[list[int]] = []
    known_masks: list[list[bool]] = []
    for history, candidates in zip(table["history"], table["candidates"], strict=True):
        known_history = [index[i] for i in history if i in index]
        if len(known_history) < len(history):
            stats["unknown_history_ids"] += len(history) - len(known_history)
        known_history = known_history[len(known_history) - max_history_length :] if max_history_length else []
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
        device = _model_device(model, device)
        scores = _score_rows(model, cache.vectors, histories, candidate_rows, batch_size, device)
    predictions = [
        ImpressionPrediction(impression_id, ranks_from_scores(row_scores, known))
        for impression_id, row_scores, known in zip(table["impression_id"], scores, known_masks, strict=True)
    ]
    if own_stats:
        stats.log(logger, "predict_ranks")
    return predictions


def write_prediction_file(
    path: str | os.PathLike[str], predictions: Iterable[ImpressionPrediction], *, zip_file: bool = False
) -> Path:
    """Writes MIND's ``prediction.txt`` (one ``"<impression_id> [r1,r2,...]"`` line per impression, in the given
    order); with ``zip_file=True`` also ``prediction.zip`` beside it (the leaderboard's upload, holding
    ``prediction.txt`` at its root). Returns the path of the zip when written, else of the text file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for prediction in predictions:
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
    max_history_length: int | None = None,
    zip_file: bool = True,
    cache: NewsVectorCache | None = None,
    lenient: bool = False,
    stats: LoadStats | None = None,
) -> tuple[Path, NewsVectorCache]:
    """``output_dir/prediction.txt`` (+ ``prediction.zip``) for a MIND folder (dev or unlabelled test).

    Encodes the folder's ``news.tsv`` titles once (unless `cache` is given; news of the folder missing from
    a given cache are encoded and added), then ranks every impression of ``behaviors.tsv`` by `predict_ranks`.
    Returns the written path and the cache (to save with ``cache.save``).
    """
    from .data.mind import read_behaviors, read_news, split_files

    own_stats = stats is None
    stats = LoadStats() if stats is None else stats
    news_path, behaviors_path = split_files(mind_dir)
    news = read_news(news_path, lenient=lenient, stats=stats)
    table = news.select_columns(["news_id", "title"]).with_format(None)[:]
    if cache is None:
        cache = NewsVectorCache.from_titles(model, tokenizer, table["news_id"], table["title"], batch_size=batch_size)
    else:
        missing = [i for i, news_id in enumerate(table["news_id"]) if news_id not in cache]
        if missing:
            titles = [table["title"][i] for i in missing]
            cache.add([table["news_id"][i] for i in missing], encode_titles(model, tokenizer, titles, batch_size=batch_size))
    behaviors = read_behaviors(behaviors_path, lenient=lenient, stats=stats)
    predictions = predict_ranks(
        model, cache, behaviors, max_history_length=max_history_length, batch_size=batch_size, stats=stats
    )
    path = write_prediction_file(Path(output_dir) / "prediction.txt", predictions, zip_file=zip_file)
    if own_stats:
        stats.log(logger, f"MIND predictions for {mind_dir}")
    logger.info("Wrote %d impression predictions to %s", len(predictions), path)
    return path, cache


# ------------------------------------------------------------------------------------------ application API


class NewsTitle(str):
    """A raw title passed where a news id is expected: `MTRecRecommender` encodes it instead of looking it up.

    Plain strings are always news ids, so a misspelt id raises `KeyError` instead of being silently encoded as
    a one-word title.
    """

    __slots__ = ()


NewsRef = str  # a news id, or a NewsTitle


@dataclass
class Recommendation:
    """Scores of the candidates (input order) and their ranking (candidate positions, best first)."""

    scores: np.ndarray
    ranking: np.ndarray

    def __iter__(self) -> Iterator[np.ndarray]:  # unpacks as (scores, ranking)
        return iter((self.scores, self.ranking))


class MTRecRecommender:
    """Recommends news with a trained `MTRecModel` and a cache of news vectors.

    >>> recommender = MTRecRecommender.from_pretrained("outputs/mtrec")            # doctest: +SKIP
    >>> recommender.add_news(["N1", "N2", "N3"], ["Stocks rally", "Cup final", "Rain again"])  # doctest: +SKIP
    >>> scores, ranking = recommender.recommend(["N1"], ["N2", "N3", NewsTitle("Shares climb")])  # doctest: +SKIP

    History and candidates are news ids (looked up in the cache; an unknown id raises `KeyError` naming it) or
    `NewsTitle` strings (encoded on the fly, tokenised as in training, not added to the cache). An empty history
    gives the user vector 0 (see `MTRecModel`), so every candidate scores 0 and the ranking is the input order.
    Ties are always broken by input order.
    """

    def __init__(
        self,
        model: MTRecModel,
        tokenizer: PreTrainedTokenizerBase,
        cache: NewsVectorCache | None = None,
        *,
        batch_size: int = 256,
        device: str | torch.device | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.device = _model_device(model, device)
        if cache is None:
            cache = NewsVectorCache(
                [], torch.zeros(0, model.config.hidden_size), fingerprint=news_encoder_fingerprint(model),
                max_title_length=model.config.max_title_length,
            )
        self.cache = cache

    @classmethod
    def from_pretrained(
        cls,
        folder: str | os.PathLike[str],
        *,
        cache_path: str | os.PathLike[str] | None = None,
        device: str | torch.device | None = None,
        **kwargs: Any,
    ) -> MTRecRecommender:
        """Loads the model and tokenizer of a saved MTRec folder (e.g. `train_mtrec.py`'s output) and, when
        given (or present as ``folder/news_vectors.safetensors``), a news vector cache checked against it."""
        from transformers import AutoTokenizer

        from .modeling_mtrec import MTRecModel

        model = MTRecModel.from_pretrained(folder, **kwargs)
        if device is not None:
            model.to(device)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        default_cache = Path(folder) / "news_vectors.safetensors"
        if cache_path is None and default_cache.is_file():
            cache_path = default_cache
        cache = NewsVectorCache.load(cache_path, model) if cache_path is not None else None
        return cls(model, tokenizer, cache, device=device)

    def add_news(self, news_ids: Sequence[str], titles: Sequence[str]) -> None:
        """Encodes titles and stores them in the cache under the ids (an id already there is overwritten)."""
        if len(news_ids) != len(titles):
            raise ValueError(f"got {len(news_ids)} news ids but {len(titles)} titles")
        self.cache.add(list(news_ids), self.encode_titles(titles))

    def encode_titles(self, titles: Sequence[str]) -> torch.Tensor:
        """News vectors of raw titles. (n,) -> (n, D)."""
        return encode_titles(self.model, self.tokenizer, titles, batch_size=self.batch_size, device=self.device)

    def _vectors(self, refs: Sequence[NewsRef]) -> torch.Tensor:
        """Vectors of ids and/or `NewsTitle`s, in input order. (n,) -> (n, D)."""
        out = torch.zeros(len(refs), self.cache.hidden_size)  # (n, D)
        titles = [i for i, ref in enumerate(refs) if isinstance(ref, NewsTitle)]
        ids = [i for i, ref in enumerate(refs) if not isinstance(ref, NewsTitle)]
        if ids:
            out[ids] = self.cache.lookup(str(refs[i]) for i in ids)
        if titles:
            out[titles] = self.encode_titles([str(refs[i]) for i in titles])
        return out

    @torch.no_grad()
    def recommend_batch(
        self, histories: Sequence[Sequence[NewsRef]], candidates: Sequence[Sequence[NewsRef]]
    ) -> list[Recommendation]:
        """`recommend` for many users at once: one user-encoder pass per `batch_size` users."""
        if len(histories) != len(candidates):
            raise ValueError(f"got {len(histories)} histories but {len(candidates)} candidate lists")
        max_history = self.model.config.max_history_length
        # Every distinct reference is resolved (looked up or encoded) once, then addressed by row.
        refs: dict[tuple[bool, str], int] = {}
        for seq in (*histories, *candidates):
            for ref in seq:
                refs.setdefault((isinstance(ref, NewsTitle), str(ref)), len(refs))
        keys = list(refs)
        vectors = self._vectors([NewsTitle(text) if is_title else text for is_title, text in keys])  # (R, D)
        # The model keeps the most recent max_history_length clicks (as in training).
        history_rows = [[refs[(isinstance(r, NewsTitle), str(r))] for r in h][-max_history:] for h in histories]
        candidate_rows = [[refs[(isinstance(r, NewsTitle), str(r))] for r in c] for c in candidates]
        scores = _score_rows(self.model, vectors, history_rows, candidate_rows, self.batch_size, self.device)
        return [Recommendation(s, np.argsort(-s.astype(np.float64), kind="stable")) for s in scores]

    def recommend(self, history: Sequence[NewsRef], candidates: Sequence[NewsRef]) -> Recommendation:
        """Scores and ranks `candidates` for a user who clicked `history` (oldest first).

        Returns:
            `Recommendation` (unpacks as ``scores, ranking``): ``scores (C,)`` float32 in input order and
            ``ranking (C,)``, candidate positions from best to worst (ties in input order).

        Raises:
            KeyError: an id (a plain string) is not in the cache; the message names it.
        """
        return self.recommend_batch([history], [candidates])[0]
