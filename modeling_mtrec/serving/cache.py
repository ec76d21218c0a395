"""The news-vector cache: every news (item) vector encoded once, saved and loaded with a fingerprint of its encoder.

A model scores a candidate from its item vector and the user vector (MTRec: s_j = r_j . r_u, Bi et al.,
Findings of ACL 2022, Sec. 3.1), and an item vector depends on the item alone. Every news vector can therefore be
computed ONCE and reused by every impression that mentions the news, in a history or as a candidate
(`modeling_mtrec.evaluation.fast`, `modeling_mtrec.serving.recommender`).

`NewsVectorCache` holds the vectors of a news table, for any model of the scoring interface
(`modeling_mtrec.scoring`): MTRec's [CLS] vectors of a tokenised news table or of raw titles, or the two-tower's
item-tower vectors of `ItemFeatures`. It is saved/loaded as safetensors with a fingerprint of the item encoder,
so that a stale cache is detected (`StaleCacheError`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file

from ..data.mind import as_id
from ..models.mtrec.processing_mtrec import title_batches, tokenize_titles
from ..models.two_tower.features import ItemFeatures
from ..scoring import ScoringModel, encode_item_batches

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

__all__ = [
    "NewsVectorCache",
    "StaleCacheError",
    "encode_item_table",
    "encode_titles",
    "news_encoder_fingerprint",
]

_CACHE_FORMAT = "mtrec-news-vectors/1"
# Config entries that do not change the news vectors (bookkeeping; a save/load round trip fills in `dtype`).
_CONFIG_KEYS_WITHOUT_EFFECT = frozenset(
    {"dtype", "torch_dtype", "transformers_version", "architectures", "name_or_path", "return_dict",
     "output_hidden_states", "output_attentions", "use_cache", "id2label", "label2id"}
)


class StaleCacheError(ValueError):
    """A `NewsVectorCache` built by a different item encoder (other weights or config) than the model given."""


# ------------------------------------------------------------------------------------------------ encoding


def news_encoder_fingerprint(model: ScoringModel) -> str:
    """A 16-hex-digit hash of everything an item vector depends on: the item encoder's config and weights.

    The item encoder is `model.get_item_encoder()` (MTRec: the BERT news encoder; two-tower: the item tower).
    The user encoder and the heads are left out on purpose: they do not change r_j, so a cache stays valid
    when only they change. Hashing the weights (not only the config) is what catches a cache written before
    training against the trained model; it costs ~0.1 s for a 6-layer MiniLM.
    """
    encoder = model.get_item_encoder()
    hasher = hashlib.sha256()
    encoder_config = getattr(encoder, "config", None)
    config = {
        key: value
        for key, value in (encoder_config.to_dict() if encoder_config is not None else {}).items()
        if not key.startswith("_") and key not in _CONFIG_KEYS_WITHOUT_EFFECT
    }
    hasher.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        hasher.update(name.encode())
        hasher.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return hasher.hexdigest()[:16]


def _title_pad_token_id(model: ScoringModel) -> int:
    pad = getattr(model.config.encoder_config, "pad_token_id", None)
    return 0 if pad is None else int(pad)


def _item_batches(
    model: ScoringModel, items: Dataset | ItemFeatures, batch_size: int, sort_by_length: bool
) -> Iterator[tuple[list[int], Mapping[str, torch.Tensor]]]:
    """`encode_items` inputs for a table of items: the two-tower's `ItemFeatures`, or MTRec's tokenised titles."""
    if isinstance(items, ItemFeatures):
        return items.batches(batch_size)
    if "input_ids" not in items.column_names:
        raise ValueError(f"the news table lacks input_ids (has {items.column_names}); build it with tokenize_news")
    token_lists = items.select_columns(["input_ids"]).with_format(None)[:]["input_ids"]
    return title_batches(token_lists, _title_pad_token_id(model), batch_size, sort_by_length=sort_by_length)


def encode_item_table(
    model: ScoringModel,
    items: Dataset | ItemFeatures,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    sort_by_length: bool = True,
) -> torch.Tensor:
    """The vectors (N, D), float32 on CPU, of every row of an item table: MTRec's tokenised news table
    (`tokenize_news` / `MINDCorpus.news`; `sort_by_length` as in `processing_mtrec.title_batches`) or the
    two-tower's `ItemFeatures`."""
    return encode_item_batches(model, _item_batches(model, items, batch_size, sort_by_length), len(items), device=device)


def encode_titles(
    model: ScoringModel,
    tokenizer: PreTrainedTokenizerBase,
    titles: Sequence[str],
    max_length: int | None = None,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """News vectors of raw titles, for a model that encodes titles (MTRec). (N titles) -> (N, D) float32 on CPU.

    Titles are tokenised exactly as `tokenize_news` does (`processing_mtrec.tokenize_titles`), so a title gives
    the same vector here as through a tokenised news table.

    Args:
        max_length: tokens per title, [CLS]/[SEP] included; defaults to ``model.config.max_title_length``.
    """
    max_length = model.config.max_title_length if max_length is None else max_length
    token_lists = tokenize_titles(tokenizer, titles, max_length)["input_ids"] if len(titles) else []
    batches = title_batches(token_lists, _title_pad_token_id(model), batch_size)
    return encode_item_batches(model, batches, len(token_lists), device=device)


# ------------------------------------------------------------------------------------------------ the cache


class NewsVectorCache:
    """Item (news) vectors r_j of a set of news, encoded once, addressable by news id or by row.

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
        self.news_ids: list[str] = [as_id(news_id) for news_id in news_ids]
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
        try:
            return as_id(news_id) in self.index
        except TypeError:
            return False

    def __repr__(self) -> str:
        return f"NewsVectorCache({len(self)} news, dim={self.vectors.shape[1]}, fingerprint={self.fingerprint})"

    @property
    def hidden_size(self) -> int:
        return self.vectors.shape[1]

    # ---- building

    @classmethod
    def from_model(
        cls,
        model: ScoringModel,
        news: Dataset | ItemFeatures,
        *,
        batch_size: int = 256,
        device: str | torch.device | None = None,
        sort_by_length: bool = True,
        news_ids: Sequence[str] | None = None,
    ) -> NewsVectorCache:
        """Encodes every row of an item table once: MTRec's tokenised news table (`tokenize_news` /
        `MINDCorpus.news`) or the two-tower's `ItemFeatures`.

        Row i of the cache is row i of `news`. The ids come from `news_ids`, else from the table's ``news_id``
        column; a table without one (e.g. built by hand, or `ItemFeatures`) gets the row numbers as ids (``"0"``,
        ``"1"``, ...). For titles, `sort_by_length` (default) batches titles of similar length, about twice as
        fast; ``False`` pads every title to the longest one, which reproduces the Trainer's evaluation loop's float
        rounding exactly (see `processing_mtrec.title_batches`).
        """
        if news_ids is None:
            if "news_id" in (getattr(news, "column_names", None) or []):
                news_ids = news.select_columns(["news_id"]).with_format(None)[:]["news_id"]
            else:
                news_ids = [str(row) for row in range(len(news))]
        vectors = encode_item_table(model, news, batch_size=batch_size, device=device, sort_by_length=sort_by_length)
        return cls(
            news_ids,
            vectors,
            fingerprint=news_encoder_fingerprint(model),
            max_title_length=getattr(model.config, "max_title_length", None),
        )

    @classmethod
    def from_titles(
        cls,
        model: ScoringModel,
        tokenizer: PreTrainedTokenizerBase,
        news_ids: Sequence[str],
        titles: Sequence[str],
        *,
        batch_size: int = 256,
        device: str | torch.device | None = None,
    ) -> NewsVectorCache:
        """Encodes raw titles (tokenised as `tokenize_news` does) under the given ids, for a model that encodes
        titles (MTRec)."""
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
        """Adds (or overwrites) news vectors. (len(news_ids), D). Ids are normalised by `as_id` (``123`` -> ``"123"``)."""
        news_ids = [as_id(news_id) for news_id in news_ids]
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
        for news_id in map(as_id, news_ids):
            row = self.index.get(news_id)
            if row is None:
                raise KeyError(f"news id {news_id!r} is not in the news vector cache ({len(self)} news)")
            rows.append(row)
        return rows

    def lookup(self, news_ids: Iterable[str]) -> torch.Tensor:
        """Vectors of the given ids. (n,) -> (n, D); `KeyError` naming the first unknown id."""
        return self.vectors[torch.as_tensor(self.rows(news_ids), dtype=torch.long)]

    def aligned_to(self, news: Dataset | ItemFeatures) -> torch.Tensor:
        """Vectors in the row order of a tokenised news table, matched by ``news_id``. (len(news), D).

        Used when a cache was saved earlier (possibly from another table holding these news) and the impressions
        point at rows of `news`. A table without a ``news_id`` column must have exactly the cache's rows.
        """
        if "news_id" not in (getattr(news, "column_names", None) or []):  # e.g. ItemFeatures
            if len(news) != len(self):
                raise ValueError(f"a news table without news_id must have the cache's {len(self)} rows, got {len(news)}")
            return self.vectors
        ids = news.data.column("news_id").to_pylist()
        if ids == self.news_ids:
            return self.vectors
        return self.lookup(ids)

    # ---- persistence and staleness

    def check(self, model: ScoringModel, *, strict: bool = True) -> None:
        """Raises `StaleCacheError` (or, with ``strict=False``, logs a warning) if `model`'s item encoder differs
        from the one that built the cache: its vectors would then not be the model's r_j."""
        expected = news_encoder_fingerprint(model)
        if self.fingerprint == expected and self.hidden_size == model.vector_size:
            return
        message = (
            f"the news vector cache was built by a news encoder with fingerprint {self.fingerprint} "
            f"(dim {self.hidden_size}), but the model's is {expected} (dim {model.vector_size}): "
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
        cls, path: str | os.PathLike[str], model: ScoringModel | None = None, *, strict: bool = True
    ) -> NewsVectorCache:
        """Loads a cache written by `save`; with `model`, checks it was built by that model's news encoder
        (`check`: `StaleCacheError`, or a warning with ``strict=False``)."""
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(os.fspath(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
            tensors = load_file(os.fspath(path))
        except SafetensorError as error:  # safetensors' own message ("incomplete metadata, ...") names no file
            raise ValueError(
                f"{path}: cannot read the news vector cache ({error}); the file is truncated (an interrupted copy or "
                "write?) or not a safetensors file"
            ) from error
        if metadata.get("format") != _CACHE_FORMAT:
            raise ValueError(f"{path}: not a news vector cache (metadata format {metadata.get('format')!r})")
        try:
            news_ids = json.loads(metadata["news_ids"])
            if not isinstance(news_ids, list):
                raise TypeError(f"news_ids is a {type(news_ids).__name__}, not a list")
            max_title_length = int(metadata["max_title_length"]) if metadata.get("max_title_length") else None
            cache = cls(
                news_ids, tensors["vectors"], fingerprint=metadata.get("fingerprint") or None,
                max_title_length=max_title_length,
            )
        except (KeyError, TypeError, ValueError, RecursionError) as error:  # a damaged or hand-made file
            raise ValueError(f"{path}: not a valid news vector cache ({type(error).__name__}: {error})") from error
        if model is not None:
            cache.check(model, strict=strict)
        return cache
