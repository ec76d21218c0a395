"""Item-vector tables: vectors encoded once, keyed, saved in one safetensors format with one encoder fingerprint.

A model scores a candidate from its item vector and the user vector (MTRec: s_j = r_j . r_u, Bi et al., Findings
of ACL 2022, Sec. 3.1), and an item vector depends on the item alone. Every item vector can therefore be computed
ONCE and reused by every impression that mentions the item. This module holds such tables; it knows no model type:
it takes ids and vectors. The encoding itself is the scoring interface's (`modeling_mtrec.scoring.
encode_item_batches`, fed with the batches each model's processing yields), called by evaluation and serving,
which then fill a table here.

- `VectorTable`: the shared base: keys -> rows of a float32 (N, D) table on the CPU, non-finite vectors refused
  (an error naming the first key whose vector holds NaN or inf), one safetensors file per table.
- `NewsVectorCache`: news (item) vectors r_j by news id, for any model of the scoring interface (MTRec's [CLS]
  vectors, the two-tower's item-tower vectors); checked against a model with `check` (`StaleCacheError`).
- `TextFeatureCache`: mean-pooled frozen-LM vectors by text (the foundation model's `text_embeds`, the
  two-tower's frozen title vectors), one file per LM fingerprint; `mean_pooled_lm_vectors` is the encoding.
- `HistoryVectorCache`: SpeedyFeed's training-time cache of recently encoded history vectors, by news-table row.
- `build_index` / `search`: faiss inner-product indexes over a vector table (faiss is imported when first used).

The one file format (`save_vectors` / `load_vectors`): tensor ``vectors (N, D)``; metadata ``format``
(``"mtrec-vectors/1"``), ``kind`` (``"news"``, ``"text"``), ``keys`` (JSON list, row order), ``fingerprint``, and
the table's own settings (``max_title_length``; ``lm``, ``max_length``). The one fingerprint (`encoder_fingerprint`):
a hash of an encoder module's config (without bookkeeping keys) and weights, plus the settings that change its
vectors besides them (the LM's tokenizer vocabulary, max_length and pooling).

What stays separate, and why:
- `HistoryVectorCache` is no `VectorTable`: it is keyed by news-table row (not id), lives on the training device,
  holds the optimizer step that produced each vector, and has no fingerprint: the encoder changes at every step by
  design, so staleness is an age in steps (`max_age_steps`), not another encoder. Its state is a checkpoint's
  ``state_dict`` (saved by the Trainer beside the optimizer state), not a table to share between runs.
- `TextFeatureCache` keys are texts, not ids: one vector per distinct text whatever item carries it, and texts are
  not normalised as ids are (``as_id``). It fingerprints an LM it loads by name (a Hub id or a folder), because the
  LM is no module of a package model; the fingerprint function and the file format are the shared ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .data.mind import as_id

if TYPE_CHECKING:
    import faiss

logger = logging.getLogger(__name__)

__all__ = [
    "FORMAT",
    "INDEX_KINDS",
    "HistoryVectorCache",
    "NewsVectorCache",
    "StaleCacheError",
    "TextFeatureCache",
    "VectorTable",
    "build_index",
    "encoder_fingerprint",
    "load_vectors",
    "mean_pooled_lm_vectors",
    "save_vectors",
    "search",
]

FORMAT = "mtrec-vectors/1"
# Config entries that do not change an encoder's vectors (bookkeeping written by whichever version saved the model;
# a save/load round trip fills in `dtype`). Keys starting with "_" (e.g. `_name_or_path`) are left out as well.
_CONFIG_KEYS_WITHOUT_EFFECT = frozenset(
    {"dtype", "torch_dtype", "transformers_version", "architectures", "name_or_path", "return_dict",
     "output_hidden_states", "output_attentions", "use_cache", "id2label", "label2id", "gradient_checkpointing"}
)


class StaleCacheError(ValueError):
    """A vector table built by a different encoder (other weights, config or settings) than the one given."""


# ------------------------------------------------------------------------------------------------ fingerprint


def encoder_fingerprint(encoder: torch.nn.Module, *, skip: Iterable[str] = (), **settings: Any) -> str:
    """16 hex digits identifying everything a vector of `encoder` depends on: its config, its weights, `settings`.

    `encoder` is any module with a ``state_dict`` and, optionally, a ``config`` with ``to_dict`` (a transformers
    config); keys of `_CONFIG_KEYS_WITHOUT_EFFECT` and private keys are left out, so a save/load round trip or a
    copy of the folder elsewhere gives the same fingerprint. `settings` are what changes the vectors besides the
    module (JSON-serialisable, e.g. ``max_length=32, pooling="mean"``); `skip` names state-dict entries left out
    (weights a loaded LM initialised at random because its checkpoint lacks them, e.g. an unused pooler). Hashing
    the weights (not only the config) is what catches a table written before training against the trained model;
    ~0.1 s for a 6-layer MiniLM.
    """
    skip = set(skip)
    hasher = hashlib.sha256()
    encoder_config = getattr(encoder, "config", None)
    config = {
        key: value
        for key, value in (encoder_config.to_dict() if encoder_config is not None else {}).items()
        if not key.startswith("_") and key not in _CONFIG_KEYS_WITHOUT_EFFECT
    }
    hasher.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        if name in skip:
            continue
        hasher.update(name.encode())
        hasher.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    if settings:
        hasher.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return hasher.hexdigest()[:16]


def _item_encoder_fingerprint(model: Any) -> str:
    """`encoder_fingerprint` of a scoring model's item encoder (`get_item_encoder()`: MTRec's BERT news encoder,
    the two-tower's item tower). The user encoder and the heads are left out on purpose: they do not change r_j, so
    a table stays valid when only they change."""
    return encoder_fingerprint(model.get_item_encoder())


# ------------------------------------------------------------------------------------------------ file format


def save_vectors(
    path: str | os.PathLike[str], kind: str, keys: Sequence[str], vectors: torch.Tensor, fingerprint: str | None,
    **settings: str,
) -> Path:
    """Writes one vector table (see the module docstring), atomically: a reader never sees a half-written file."""
    path = Path(path)
    metadata = {"format": FORMAT, "kind": kind, "keys": json.dumps(list(keys)), "fingerprint": fingerprint or "",
                **settings}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({"vectors": vectors.contiguous()}, os.fspath(tmp), metadata=metadata)
    os.replace(tmp, path)
    return path


def load_vectors(path: str | os.PathLike[str], kind: str) -> tuple[list[Any], torch.Tensor, dict[str, str]]:
    """(keys, vectors (N, D), metadata) of a file written by `save_vectors` for `kind`; `ValueError` naming the file
    when it is unreadable, truncated, another kind, or its keys do not match its vectors."""
    try:
        with safe_open(os.fspath(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(os.fspath(path))
    except SafetensorError as error:  # safetensors' own message ("incomplete metadata, ...") names no file
        raise ValueError(
            f"{path}: cannot read the {kind} vector cache ({error}); the file is truncated (an interrupted copy or "
            "write?) or not a safetensors file"
        ) from error
    if metadata.get("format") != FORMAT or metadata.get("kind") != kind:
        raise ValueError(
            f"{path}: not a {kind} vector cache (metadata format {metadata.get('format')!r}, "
            f"kind {metadata.get('kind')!r})"
        )
    try:
        keys = json.loads(metadata["keys"])
        if not isinstance(keys, list):
            raise TypeError(f"keys is a {type(keys).__name__}, not a list")
        vectors = tensors["vectors"]
        if vectors.ndim != 2 or vectors.shape[0] != len(keys):
            raise ValueError(f"{len(keys)} keys but vectors of shape {tuple(vectors.shape)}")
    except (KeyError, TypeError, ValueError, RecursionError) as error:  # a damaged or hand-made file
        raise ValueError(f"{path}: not a valid {kind} vector cache ({type(error).__name__}: {error})") from error
    return keys, vectors, metadata


# ------------------------------------------------------------------------------------------------ the tables


class VectorTable:
    """Vectors (N, D), float32 on the CPU, addressable by key or by row; non-finite vectors are refused.

    Attributes:
        keys (`list[str]`): row order of `vectors`.
        vectors (`torch.Tensor` of shape `(N, D)`): row i is the vector of ``keys[i]``.
        index (`dict[str, int]`): key -> row.
        fingerprint (`str` or `None`): `encoder_fingerprint` of the encoder that wrote the vectors.
    """

    kind: ClassVar[str] = "item"
    key_name: ClassVar[str] = "key"  # how errors name a key

    def __init__(self, keys: Sequence[Any], vectors: torch.Tensor, *, fingerprint: str | None = None) -> None:
        keys = [self._key(key) for key in keys]
        if vectors.ndim != 2 or vectors.shape[0] != len(keys):
            raise ValueError(f"vectors must be (len(keys)={len(keys)}, D), got {tuple(vectors.shape)}")
        vectors = vectors.detach().to("cpu", torch.float32).contiguous()  # (N, D)
        self._check_finite(keys, vectors)
        self.keys: list[str] = keys
        self.index: dict[str, int] = {key: row for row, key in enumerate(keys)}
        if len(self.index) != len(keys):
            seen: set[str] = set()
            duplicate = next(key for key in keys if key in seen or seen.add(key))
            raise ValueError(f"{self.key_name} {duplicate!r} appears twice in the {self.kind} vector cache")
        self.vectors = vectors
        self.fingerprint = fingerprint

    def _key(self, key: Any) -> str:
        return key

    def _check_finite(self, keys: Sequence[str], vectors: torch.Tensor) -> None:
        """`ValueError` naming the first key whose vector holds NaN or inf (e.g. the output of a diverged model)."""
        finite = torch.isfinite(vectors).all(dim=1)  # (N,)
        if not bool(finite.all()):
            row = int((~finite).nonzero()[0])
            raise ValueError(
                f"the vector of {self.key_name} {keys[row]!r} holds NaN or inf: the encoder that produced it is "
                "broken (a diverged model?); nothing was stored"
            )

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: object) -> bool:
        try:
            return self._key(key) in self.index
        except TypeError:
            return False

    @property
    def hidden_size(self) -> int:
        return self.vectors.shape[1]

    def add(self, keys: Iterable[Any], vectors: torch.Tensor) -> None:
        """Adds (or overwrites) vectors, (len(keys), D). All or nothing: a bad vector stores none."""
        keys = [self._key(key) for key in keys]
        if vectors.ndim != 2 or vectors.shape != (len(keys), self.hidden_size):
            raise ValueError(f"vectors must be ({len(keys)}, {self.hidden_size}), got {tuple(vectors.shape)}")
        if len(set(keys)) != len(keys):
            raise ValueError(f"the {self.key_name}s passed to one add() call must be distinct")
        vectors = vectors.detach().to("cpu", torch.float32)
        self._check_finite(keys, vectors)
        fresh: list[int] = []
        for i, key in enumerate(keys):
            row = self.index.get(key)
            if row is None:
                self.index[key] = len(self.keys)
                self.keys.append(key)
                fresh.append(i)
            else:
                self.vectors[row] = vectors[i]
        if fresh:
            self.vectors = torch.cat([self.vectors, vectors[fresh]])  # (N + new, D)

    def rows(self, keys: Iterable[Any]) -> list[int]:
        """Rows of the given keys; `KeyError` naming the first unknown one."""
        rows = []
        for key in map(self._key, keys):
            row = self.index.get(key)
            if row is None:
                raise KeyError(f"{self.key_name} {key!r} is not in the {self.kind} vector cache ({len(self)} rows)")
            rows.append(row)
        return rows

    def lookup(self, keys: Iterable[Any]) -> torch.Tensor:
        """Vectors of the given keys. (n,) -> (n, D); `KeyError` naming the first unknown key."""
        return self.vectors[torch.as_tensor(self.rows(keys), dtype=torch.long)]


class NewsVectorCache(VectorTable):
    """Item (news) vectors r_j of a set of news, encoded once, addressable by news id or by row.

    Attributes:
        news_ids (`list[str]`): the news ids, row order of `vectors` (ids are normalised by `as_id`: 123 -> "123").
        vectors (`torch.Tensor` of shape `(N, D)`, float32, CPU): row i is the vector of ``news_ids[i]``.
        index (`dict[str, int]`): news id -> row.
        fingerprint (`str` or `None`): `encoder_fingerprint` of the model's item encoder that encoded the vectors.
        max_title_length (`int` or `None`): title length the news were tokenised to.

    Build it with ``NewsVectorCache.for_model(model, news_ids, vectors)`` from vectors of the scoring interface
    (`modeling_mtrec.evaluation.news_vector_cache` encodes a news table into one), extend it with `add`, persist it
    with `save` / `load` (one safetensors file; ids and fingerprint in its metadata).
    """

    kind = "news"
    key_name = "news id"

    def __init__(
        self,
        news_ids: Sequence[Any],
        vectors: torch.Tensor,
        *,
        fingerprint: str | None = None,
        max_title_length: int | None = None,
    ) -> None:
        super().__init__(news_ids, vectors, fingerprint=fingerprint)
        self.max_title_length = max_title_length

    def _key(self, key: Any) -> str:
        return as_id(key)

    @property
    def news_ids(self) -> list[str]:
        return self.keys

    def __repr__(self) -> str:
        return f"NewsVectorCache({len(self)} news, dim={self.hidden_size}, fingerprint={self.fingerprint})"

    @classmethod
    def for_model(cls, model: Any, news_ids: Sequence[Any], vectors: torch.Tensor) -> NewsVectorCache:
        """A cache of `model`'s item vectors (`encode_items`), stamped with its item encoder's fingerprint and title
        length (``config.max_title_length``, None for a model without titles)."""
        return cls(
            news_ids, vectors, fingerprint=_item_encoder_fingerprint(model),
            max_title_length=getattr(model.config, "max_title_length", None),
        )

    def aligned_to(self, news: Any) -> torch.Tensor:
        """Vectors in the row order of a news table (a `datasets.Dataset` with ``news_id``), matched by id.
        (len(news), D).

        Used when a cache was saved earlier (possibly from another table holding these news) and the impressions
        point at rows of `news`. A table without a ``news_id`` column (e.g. `ItemFeatures`) must have exactly the
        cache's rows.
        """
        if "news_id" not in (getattr(news, "column_names", None) or []):
            if len(news) != len(self):
                raise ValueError(f"a news table without news_id must have the cache's {len(self)} rows, got {len(news)}")
            return self.vectors
        ids = news.data.column("news_id").to_pylist()
        if ids == self.news_ids:
            return self.vectors
        return self.lookup(ids)

    def check(self, model: Any, *, strict: bool = True) -> None:
        """Raises `StaleCacheError` (or, with ``strict=False``, logs a warning) if `model`'s item encoder differs
        from the one that built the cache: its vectors would then not be the model's r_j."""
        expected = _item_encoder_fingerprint(model)
        if self.fingerprint == expected and self.hidden_size == model.vector_size:
            return
        message = (
            f"the news vector cache was built by a news encoder with fingerprint {self.fingerprint} "
            f"(dim {self.hidden_size}), but the model's is {expected} (dim {model.vector_size}): "
            "the weights or config changed since it was written. Rebuild it with "
            "modeling_mtrec.evaluation.news_vector_cache(model, news)."
        )
        if strict:
            raise StaleCacheError(message)
        logger.warning("%s Using it anyway (strict=False).", message)

    def save(self, path: str | os.PathLike[str]) -> None:
        """One safetensors file (`save_vectors`): the news ids as keys, ``max_title_length`` in the metadata."""
        save_vectors(
            path, self.kind, self.news_ids, self.vectors, self.fingerprint,
            max_title_length=str(self.max_title_length or ""),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str], model: Any = None, *, strict: bool = True) -> NewsVectorCache:
        """Loads a cache written by `save`; with `model`, checks it was built by that model's item encoder
        (`check`: `StaleCacheError`, or a warning with ``strict=False``)."""
        news_ids, vectors, metadata = load_vectors(path, cls.kind)
        try:
            max_title_length = int(metadata["max_title_length"]) if metadata.get("max_title_length") else None
            cache = cls(
                news_ids, vectors, fingerprint=metadata.get("fingerprint") or None, max_title_length=max_title_length
            )
        except (TypeError, ValueError) as error:  # a damaged or hand-made file
            raise ValueError(f"{path}: not a valid news vector cache ({type(error).__name__}: {error})") from error
        if model is not None:
            cache.check(model, strict=strict)
        return cache


# ------------------------------------------------------------------------------------------ frozen-LM text vectors


def _load_lm(name_or_path: str | os.PathLike[str]) -> tuple[Any, torch.nn.Module, list[str]]:
    """(tokenizer, encoder in eval mode, the encoder's weights missing from the checkpoint, initialised at random)."""
    from transformers import AutoModel, AutoTokenizer

    encoder, info = AutoModel.from_pretrained(str(name_or_path), output_loading_info=True)
    return AutoTokenizer.from_pretrained(str(name_or_path)), encoder.eval(), list(info.get("missing_keys", ()))


@torch.no_grad()
def _mean_pooled(texts: Sequence[str], tokenizer: Any, encoder: torch.nn.Module, batch_size: int, max_length: int):
    out = [torch.zeros(0, encoder.config.hidden_size)]
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            [t or "" for t in texts[start : start + batch_size]], padding=True, truncation=True,
            max_length=max_length, return_tensors="pt",
        )
        hidden = encoder(**batch).last_hidden_state  # (B, L, H)
        mask = batch["attention_mask"][..., None].to(hidden.dtype)  # (B, L, 1)
        out.append((hidden * mask).sum(1) / mask.sum(1).clamp(min=1))  # (B, L, H) -> (B, H)
    return torch.cat(out).float()


def mean_pooled_lm_vectors(
    texts: Sequence[str], lm_name_or_path: str | os.PathLike[str], *, batch_size: int = 256, max_length: int = 32
) -> torch.Tensor:
    """Frozen-LM vectors of texts: tokenise with truncation to `max_length`, attention-masked mean of the last hidden
    states (the sentence-transformers pooling of all-MiniLM-L6-v2; the paper's MEAN(LM(tokens)) of the foundation
    model). -> (num_texts, hidden) float32. The two-tower's frozen title vectors and `TextFeatureCache` use it."""
    tokenizer, encoder, _ = _load_lm(lm_name_or_path)
    return _mean_pooled(list(texts), tokenizer, encoder, batch_size, max_length)


def _lm_fingerprint(tokenizer: Any, encoder: torch.nn.Module, missing: Sequence[str], max_length: int) -> str:
    vocab = hashlib.sha256(json.dumps(tokenizer.get_vocab(), sort_keys=True).encode()).hexdigest()
    return encoder_fingerprint(encoder, skip=missing, tokenizer_vocab=vocab, max_length=max_length, pooling="mean")


class TextFeatureCache(VectorTable):
    """Mean-pooled frozen-LM vectors of texts, keyed by text, for one LM (one fingerprint).

    The foundation model freezes its language model: E_lm(Q) = W_lm . MEAN(LM(tokens of Q)) with only W_lm trained,
    so the mean-pooled vector of a text never changes during training and each distinct text is encoded once, here
    (`mean_pooled_lm_vectors`). A file is reused for any text it holds and refused (`StaleCacheError`) for another
    LM, tokenizer or max_length. `TextFeatureCache.open(lm, cache_dir)` keeps one file per fingerprint,
    ``text-features-{fingerprint}.safetensors``, so switching LMs never mixes vectors.

    Attributes:
        lm_name_or_path: the LM that encodes missing texts.
        fingerprint: `encoder_fingerprint` of the LM (with its tokenizer vocabulary, max_length and pooling).
        path: the file `save()` writes (None: in memory only).
        encoded: texts encoded by the LM since this object was created (the rest came from the file).
        encode_seconds: wall time spent encoding them.
    """

    kind = "text"
    key_name = "text"

    def __init__(
        self,
        lm_name_or_path: str | os.PathLike[str],
        fingerprint: str,
        max_length: int = 32,
        path: str | os.PathLike[str] | None = None,
        *,
        texts: Sequence[str] = (),
        vectors: torch.Tensor | None = None,
        lm: tuple[Any, torch.nn.Module, list[str]] | None = None,
    ) -> None:
        super().__init__(texts, torch.zeros(0, 0) if vectors is None else vectors, fingerprint=fingerprint)
        self.lm_name_or_path = str(lm_name_or_path)
        self.max_length = max_length
        self.path = Path(path) if path is not None else None
        self.encoded = 0
        self.encode_seconds = 0.0
        self._lm = lm  # `_load_lm`'s (tokenizer, encoder, missing weights), loaded when first needed

    @property
    def texts(self) -> list[str]:
        return self.keys

    def __repr__(self) -> str:
        return f"TextFeatureCache({len(self)} texts, lm={self.lm_name_or_path!r}, fingerprint={self.fingerprint})"

    def _key(self, key: Any) -> str:
        if not isinstance(key, str):
            raise TypeError(f"a text must be a string, got {type(key).__name__}: {key!r}")
        return key

    @classmethod
    def open(
        cls, lm_name_or_path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None,
        max_length: int = 32,
    ) -> TextFeatureCache:
        """The cache of this LM in `cache_dir` (``text-features-{fingerprint}.safetensors``), loaded if it exists.
        The LM is loaded once here (its fingerprint hashes its weights) and kept to encode missing texts."""
        lm = _load_lm(lm_name_or_path)
        fingerprint = _lm_fingerprint(*lm, max_length)
        path = None if cache_dir is None else Path(cache_dir) / f"text-features-{fingerprint}.safetensors"
        if path is not None and path.is_file():
            cache = cls.load(path, lm_name_or_path, max_length=max_length, fingerprint=fingerprint)
            cache._lm = lm
            logger.info("Loaded %d cached text vectors from %s", len(cache), path)
            return cache
        return cls(lm_name_or_path, fingerprint, max_length, path, lm=lm)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        lm_name_or_path: str | os.PathLike[str],
        *,
        max_length: int = 32,
        fingerprint: str | None = None,
    ) -> TextFeatureCache:
        """Load a cache file for `lm_name_or_path`; raises `StaleCacheError` if another LM (or max_length) wrote it."""
        lm = None
        if fingerprint is None:
            lm = _load_lm(lm_name_or_path)
            fingerprint = _lm_fingerprint(*lm, max_length)
        texts, vectors, metadata = load_vectors(path, cls.kind)
        if metadata.get("fingerprint") != fingerprint:
            raise StaleCacheError(
                f"{path} holds vectors of LM {metadata.get('lm')!r} (fingerprint {metadata.get('fingerprint')}), "
                f"not of {str(lm_name_or_path)!r} with max_length={max_length} (fingerprint {fingerprint}); "
                "delete it or point the cache elsewhere"
            )
        return cls(lm_name_or_path, fingerprint, max_length, path, texts=texts, vectors=vectors, lm=lm)

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        path = Path(path) if path is not None else self.path
        if path is None:
            raise ValueError("no path: pass one, or build the cache with TextFeatureCache.open(lm, cache_dir)")
        return save_vectors(
            path, self.kind, self.texts, self.vectors, self.fingerprint, lm=self.lm_name_or_path,
            max_length=str(self.max_length),
        )

    def encode(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """Vectors of `texts` in order, (N, H) float32; only texts not in the cache go through the LM."""
        texts = [self._key(text) for text in texts]
        missing = list(dict.fromkeys(t for t in texts if t not in self.index))
        if missing:
            if self._lm is None:
                self._lm = _load_lm(self.lm_name_or_path)
            start = time.perf_counter()
            tokenizer, encoder, _ = self._lm
            new = _mean_pooled(missing, tokenizer, encoder, batch_size, self.max_length)
            self.encode_seconds += time.perf_counter() - start
            self.encoded += len(missing)
            if len(self) == 0:  # the first vectors set the width
                self.vectors = torch.zeros(0, new.shape[1])
            self.add(missing, new)
        if not texts:
            return torch.zeros(0, self.hidden_size)
        return self.lookup(texts)


# ------------------------------------------------------------------------------------------ training-time cache

_NEVER = -(2**62)  # production step of a row never encoded: too old for any max_age_steps


class HistoryVectorCache:
    """A cache of recently encoded news vectors by news-table row, reused at history positions (SpeedyFeed).

    Xiao et al., "Training Large-Scale News Recommenders with Pretrained Language Models in the Loop", KDD 2022,
    Sec. 4.2: most of a batch's titles are clicked news in users' histories, and a news seen a few steps ago has
    barely moved since; reusing its vector, without gradient, saves most of the encoder's work. The vectors that
    get a gradient are those of the candidates (always encoded) and of history news not seen recently.

    `lookup(rows, step)` returns the stored vectors and which of them are fresh enough (produced at an optimizer
    step s with 0 <= step - s <= max_age_steps); `update(rows, vectors, step)` stores new ones. Its state is two
    tensors, saved with a checkpoint so a resumed run reuses exactly what the uninterrupted run would have. Under
    DDP every process keeps the cache of the vectors it encoded itself (no communication, and a process never waits
    for another's vectors). Not a `VectorTable`: see the module docstring.

    >>> cache = HistoryVectorCache(max_age_steps=2)
    >>> cache.update(torch.tensor([4, 1]), torch.ones(2, 3), step=10)
    >>> vectors, hit = cache.lookup(torch.tensor([1, 2, 4]), step=12)
    >>> hit.tolist(), vectors[0].tolist()
    ([True, False, True], [1.0, 1.0, 1.0])
    >>> cache.lookup(torch.tensor([1]), step=13)[1].tolist()  # produced 3 steps ago: too old
    [False]
    """

    def __init__(self, max_age_steps: int) -> None:
        if not isinstance(max_age_steps, int) or max_age_steps < 1:
            raise ValueError(f"max_age_steps must be a positive integer, got {max_age_steps!r}")
        self.max_age_steps = max_age_steps
        self.vectors: torch.Tensor | None = None  # (capacity, D), float32
        self.steps: torch.Tensor | None = None  # (capacity,), int64 step of production, _NEVER if none

    def __len__(self) -> int:
        return 0 if self.steps is None else int((self.steps != _NEVER).sum())

    def _ensure(self, max_row: int, dim: int, device: torch.device) -> None:
        """Grows the tables (doubling) so that row `max_row` exists."""
        capacity = 0 if self.steps is None else self.steps.shape[0]
        if self.vectors is not None and self.vectors.shape[1] != dim:
            raise ValueError(f"cached vectors have width {self.vectors.shape[1]}, got vectors of width {dim}")
        if max_row < capacity:
            return
        new_capacity = max(max_row + 1, 2 * capacity, 1024)
        vectors = torch.zeros(new_capacity, dim, device=device)
        steps = torch.full((new_capacity,), _NEVER, dtype=torch.long, device=device)
        if capacity:
            vectors[:capacity], steps[:capacity] = self.vectors, self.steps
        self.vectors, self.steps = vectors, steps

    def lookup(self, rows: torch.Tensor, step: int) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(vectors (N, D) or None when empty, hit (N,) bool) for news-table `rows` (N,) at optimizer `step`."""
        if self.steps is None:
            return None, torch.zeros(rows.shape, dtype=torch.bool, device=rows.device)
        rows = rows.to(self.steps.device)
        known = rows < self.steps.shape[0]
        safe = torch.where(known, rows, torch.zeros_like(rows))
        age = step - self.steps[safe]  # (N,)
        hit = known & (age >= 0) & (age <= self.max_age_steps)
        return self.vectors[safe], hit

    def update(self, rows: torch.Tensor, vectors: torch.Tensor, step: int) -> None:
        """Stores `vectors` (F, D) for news-table `rows` (F,), produced at optimizer `step` (no gradient kept)."""
        if rows.numel() == 0:
            return
        self._ensure(int(rows.max()), vectors.shape[-1], vectors.device)
        rows = rows.to(self.steps.device)
        self.vectors[rows] = vectors.detach().to(self.vectors.dtype)
        self.steps[rows] = step

    def state_dict(self) -> dict[str, torch.Tensor]:
        if self.steps is None:
            return {}
        return {"vectors": self.vectors.cpu(), "steps": self.steps.cpu()}

    def load_state_dict(self, state: dict[str, torch.Tensor], device: torch.device | str | None = None) -> None:
        if not state:
            self.vectors = self.steps = None
            return
        self.vectors, self.steps = state["vectors"].to(device), state["steps"].to(device)


# ------------------------------------------------------------------------------------------------ faiss indexes

INDEX_KINDS = ("flat", "ivf", "hnsw")


def build_index(
    vectors: np.ndarray, kind: str = "flat", *, nlist: int | None = None, nprobe: int = 8,
    hnsw_m: int = 32, ef_search: int = 64, seed: int = 0,
) -> faiss.Index:
    """A faiss inner-product index over `vectors` (N, D) (L2-normalised vectors: inner product = cosine).

    kind: "flat" (exact `IndexFlatIP`), "ivf" (`IndexIVFFlat`, `nlist` cells, default ~4 sqrt(N), `nprobe` probed)
    or "hnsw" (`IndexHNSWFlat` with `hnsw_m` links per node and `ef_search`).
    """
    import faiss

    if kind not in INDEX_KINDS:
        raise ValueError(f"index kind must be one of {INDEX_KINDS}, got {kind!r}")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) == 0:
        raise ValueError(f"vectors must be a non-empty (N, D) array, got shape {vectors.shape}")
    dim = vectors.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "ivf":
        nlist = nlist or max(1, min(len(vectors) // 39, int(4 * np.sqrt(len(vectors)))))  # faiss wants >= 39 per cell
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(vectors)
        index.nprobe = min(nprobe, nlist)
    else:
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = ef_search
    index.add(vectors)
    return index


def search(
    index: faiss.Index, queries: np.ndarray, k: int, exclude: Sequence[Sequence[int]] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, rows) per query (Q, k), skipping each query's `exclude` rows (e.g. its history).

    faiss is asked for k + the longest exclusion list, so k rows remain after filtering (-1 / -inf pad when the
    index holds fewer).
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    extra = max((len(e) for e in exclude), default=0) if exclude is not None else 0
    fetch = min(k + extra, index.ntotal)
    scores, rows = index.search(queries, fetch)  # (Q, fetch)
    if not extra:
        return _pad(scores, rows, k)
    out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    out_rows = np.full((len(queries), k), -1, dtype=np.int64)
    for q, banned in enumerate(exclude):
        keep = ~np.isin(rows[q], np.asarray(banned, dtype=np.int64)) & (rows[q] >= 0)
        kept_rows, kept_scores = rows[q][keep][:k], scores[q][keep][:k]
        out_rows[q, : len(kept_rows)], out_scores[q, : len(kept_rows)] = kept_rows, kept_scores
    return out_scores, out_rows


def _pad(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if rows.shape[1] >= k:
        return scores[:, :k], rows[:, :k]
    pad = k - rows.shape[1]
    return (np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf), np.pad(rows, ((0, 0), (0, pad)), constant_values=-1))
