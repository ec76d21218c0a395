"""The application API: `MTRecRecommender` ranks candidates for a user from cached news vectors, with news ids or
raw titles (`NewsTitle`): ``from_pretrained(folder)``, ``add_news(ids, titles)``, ``recommend(history, candidates)``."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..data.mind import as_id
from ..data.samples import recent_history
from ..models.mtrec.modeling_mtrec import MTRecModel
from ..models.mtrec.processing_mtrec import check_tokenizer
from ..scoring import model_device, score_impressions
from .cache import NewsVectorCache, encode_titles, news_encoder_fingerprint

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["MTRecRecommender", "NewsTitle", "Recommendation"]


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
        check_tokenizer(tokenizer, model.config)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.device = model_device(model, device)
        if cache is None:
            cache = NewsVectorCache(
                [], torch.zeros(0, model.vector_size), fingerprint=news_encoder_fingerprint(model),
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

        model = MTRecModel.from_pretrained(folder, **kwargs)
        if device is not None:
            model.to(device)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        check_tokenizer(tokenizer, model.config, source=folder)
        default_cache = Path(folder) / "news_vectors.safetensors"
        if cache_path is None and default_cache.is_file():
            cache_path = default_cache
        cache = NewsVectorCache.load(cache_path, model) if cache_path is not None else None
        return cls(model, tokenizer, cache, device=device)

    def add_news(self, news_ids: Sequence[str], titles: Sequence[str]) -> None:
        """Encodes titles and stores them in the cache under the ids (an id already there is overwritten; integer ids
        are stored as their string, as everywhere)."""
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
        for what, seqs in (("history", histories), ("candidate list", candidates)):
            for seq in (seqs, *seqs):
                if isinstance(seq, str):  # iterating it would look up one character after the other
                    raise TypeError(f"a {what} must be a list of news ids, got the string {seq!r}")
        max_history = self.model.config.max_history_length
        # Every distinct reference is resolved (looked up or encoded) once, then addressed by row. Ids are normalised
        # as everywhere (`as_id`: 123 -> "123").
        def key(ref: NewsRef) -> tuple[bool, str]:
            return (True, str(ref)) if isinstance(ref, NewsTitle) else (False, as_id(ref))

        refs: dict[tuple[bool, str], int] = {}
        for seq in (*histories, *candidates):
            for ref in seq:
                refs.setdefault(key(ref), len(refs))
        keys = list(refs)
        vectors = self._vectors([NewsTitle(text) if is_title else text for is_title, text in keys])  # (R, D)
        # The model keeps the most recent max_history_length clicks (as in training).
        history_rows = [recent_history([refs[key(r)] for r in h], max_history) for h in histories]
        candidate_rows = [[refs[key(r)] for r in c] for c in candidates]
        scores = score_impressions(
            self.model, vectors, history_rows, candidate_rows, batch_size=self.batch_size, device=self.device
        )
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
