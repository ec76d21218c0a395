"""The application API: `MTRecRecommender` ranks candidates for a user from cached news vectors, with news ids or
raw titles (`NewsTitle`): ``from_pretrained(folder)``, ``add_news(ids, titles)``, ``recommend(history, candidates)``.

A multi-field MTRec (`MTRecConfig.use_multi_field`) encodes a news from its title, category and title entities, so
`add_news` takes them (``categories=``, ``title_entities=``: MIND's news.tsv columns) and a `NewsTitle` carries them."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..data.mind import as_id
from ..data.samples import recent_history
from ..data.stats import LoadStats
from ..models.mtrec.modeling_mtrec import MTRecModel
from ..models.mtrec.processing_mtrec import (
    MULTI_FIELD_NEEDS,
    check_tokenizer,
    raw_news_batches,
    raw_news_fields,
)
from ..scoring import encode_item_batches, model_device, score_impressions
from ..vectors import NewsVectorCache

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["MTRecRecommender", "NewsTitle", "Recommendation"]


class NewsTitle(str):
    """A raw title passed where a news id is expected: `MTRecRecommender` encodes it instead of looking it up.

    Plain strings are always news ids, so a misspelt id raises `KeyError` instead of being silently encoded as
    a one-word title.

    A multi-field MTRec (`MTRecConfig.use_multi_field`) also needs the news' `category` (MIND's category, ``""`` for
    none) and `title_entities` (MIND's title_entities JSON or the list it holds, ``"[]"`` for none):
    ``NewsTitle("Shares climb", category="finance", title_entities="[]")``; without them it is refused, naming the
    title. A single-field MTRec reads the title alone. Two NewsTitles are the same news only when their title and,
    for a multi-field MTRec, their fields agree.
    """

    # No __slots__: a str subclass cannot have non-empty ones, so the fields live in the instance dict.

    def __new__(cls, title: str, category: str | None = None, title_entities: str | list | None = None) -> NewsTitle:
        self = super().__new__(cls, title)
        self.category = category
        self.title_entities = title_entities
        return self

    def __reduce__(self):  # str's own pickling would drop the fields
        return (type(self), (str(self), self.category, self.title_entities))

    def __repr__(self) -> str:
        fields = "" if self.category is None and self.title_entities is None else (
            f", category={self.category!r}, title_entities={self.title_entities!r}"
        )
        return f"NewsTitle({str(self)!r}{fields})"


NewsRef = str  # a news id, or a NewsTitle


def _as_list(value: object, what: str, items: str = "news ids") -> list:
    """`value` read once, as a list: a generator or iterator is consumed here and never again. A string (iterating
    it would give one character after the other), None or anything not iterable is a `TypeError` naming `what`."""
    if isinstance(value, str):
        raise TypeError(f"{what} must be a list of {items}, got the string {value!r}")
    if not isinstance(value, Iterable):
        raise TypeError(f"{what} must be a list of {items}, got {type(value).__name__}: {value!r}")
    return list(value)


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
    Ties are always broken by input order. Histories and candidate lists may be any iterable (read once); a
    string where a list belongs, a title that is not a string, and a non-finite vector or score (a model whose
    weights hold NaN or inf, e.g. a diverged run) are errors, never an answer.
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
            cache = NewsVectorCache.for_model(model, [], torch.zeros(0, model.vector_size))
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

    def add_news(
        self,
        news_ids: Iterable[str],
        titles: Iterable[str],
        categories: Iterable[str | None] | None = None,
        title_entities: Iterable[str | list | None] | None = None,
    ) -> None:
        """Encodes news and stores them in the cache under the ids (an id already there is overwritten; integer ids
        are stored as their string, as everywhere). All are read once (any iterable); all or nothing: a bad id,
        title, field or vector stores none.

        Args:
            categories: one per news, MIND's category (``""`` or None for none). A multi-field MTRec needs them
                (`ValueError` otherwise); a category it was not trained on gets its vector for no category, as in
                training, with a warning. A single-field MTRec does not read them.
            title_entities: one per news, MIND's title_entities JSON or the list it holds (``"[]"``, ``""`` or None
                for none; EB-NeRD's reader writes the same). Needed by a multi-field MTRec, as `categories`.
        """
        news_ids = _as_list(news_ids, "news ids")
        titles = _as_list(titles, "titles", "strings")
        if len(news_ids) != len(titles):
            raise ValueError(f"got {len(news_ids)} news ids but {len(titles)} titles")
        self.cache.add(news_ids, self.encode_titles(titles, categories, title_entities))

    def encode_titles(
        self,
        titles: Iterable[str],
        categories: Iterable[str | None] | None = None,
        title_entities: Iterable[str | list | None] | None = None,
    ) -> torch.Tensor:
        """MTRec news vectors of raw titles, tokenised as in training, and for a multi-field MTRec of their
        `categories` and `title_entities` (as in `add_news`). (n,) -> (n, D); a title or field of the wrong type is a
        `TypeError` naming its position, a broken title_entities annotation a `ValueError` naming it."""
        titles = _as_list(titles, "titles", "strings")
        if categories is not None:
            categories = _as_list(categories, "categories", "strings")
        if title_entities is not None:
            title_entities = _as_list(title_entities, "title_entities", "title_entities annotations")
        batches = raw_news_batches(
            self.tokenizer, titles, self.model.config, self.batch_size, categories, title_entities
        )
        return encode_item_batches(self.model, batches, len(titles), device=self.device)

    def _vectors(self, refs: Sequence[NewsRef]) -> torch.Tensor:
        """Vectors of ids and/or `NewsTitle`s, in input order. (n,) -> (n, D)."""
        out = torch.zeros(len(refs), self.cache.hidden_size)  # (n, D)
        titles = [i for i, ref in enumerate(refs) if isinstance(ref, NewsTitle)]
        ids = [i for i, ref in enumerate(refs) if not isinstance(ref, NewsTitle)]
        if ids:
            out[ids] = self.cache.lookup(str(refs[i]) for i in ids)
        if titles:
            titles_of = [refs[i] for i in titles]
            fields = None, None
            if self.model.config.use_multi_field:
                bare = next((t for t in titles_of if t.category is None or t.title_entities is None), None)
                if bare is not None:
                    raise ValueError(
                        f"the NewsTitle {str(bare)!r} has no category or title entities: {MULTI_FIELD_NEEDS}. Give "
                        "them, NewsTitle(title, category=..., title_entities=...), or add the news first "
                        "(add_news(ids, titles, categories=..., title_entities=...)) and pass its id"
                    )
                for title in titles_of:  # a broken field is named by its NewsTitle, not by a position in a batch
                    try:
                        raw_news_fields([title.category], [title.title_entities], self.model.config, LoadStats())
                    except (TypeError, ValueError) as error:
                        raise type(error)(f"the NewsTitle {title!r}: {error}") from None
                fields = [t.category for t in titles_of], [t.title_entities for t in titles_of]
            vectors = self.encode_titles([str(t) for t in titles_of], *fields)  # (t, D)
            finite = torch.isfinite(vectors).all(dim=1)
            if not bool(finite.all()):
                title = refs[titles[int((~finite).nonzero()[0])]]
                raise ValueError(
                    f"the vector of the title {str(title)!r} holds NaN or inf: the model's news encoder is broken "
                    "(weights holding NaN or inf, e.g. a diverged run)"
                )
            out[titles] = vectors
        return out

    @torch.no_grad()
    def recommend_batch(
        self, histories: Iterable[Iterable[NewsRef]], candidates: Iterable[Iterable[NewsRef]]
    ) -> list[Recommendation]:
        """`recommend` for many users at once: one user-encoder pass per `batch_size` users."""
        histories = [_as_list(h, "a history") for h in _as_list(histories, "histories", "histories")]
        candidates = [_as_list(c, "a candidate list") for c in _as_list(candidates, "candidates", "candidate lists")]
        if len(histories) != len(candidates):
            raise ValueError(f"got {len(histories)} histories but {len(candidates)} candidate lists")
        max_history = self.model.config.max_history_length
        # Every distinct reference is resolved (looked up or encoded) once, then addressed by row. Ids are normalised
        # as everywhere (`as_id`: 123 -> "123"); a NewsTitle of a multi-field MTRec is told apart by its fields too.
        multi_field = self.model.config.use_multi_field

        def key(ref: NewsRef) -> tuple:
            if not isinstance(ref, NewsTitle):
                return (False, as_id(ref))
            if not multi_field:
                return (True, str(ref))
            entities = ref.title_entities
            return (True, str(ref), ref.category, isinstance(entities, list), repr(entities))

        refs: dict[tuple, int] = {}
        first: list[NewsRef] = []  # the first reference of each key, in row order
        for seq in (*histories, *candidates):
            for ref in seq:
                if refs.setdefault(key(ref), len(refs)) == len(first):
                    first.append(ref if isinstance(ref, NewsTitle) else as_id(ref))
        vectors = self._vectors(first)  # (R, D)
        # The model keeps the most recent max_history_length clicks (as in training).
        history_rows = [recent_history([refs[key(r)] for r in h], max_history) for h in histories]
        candidate_rows = [[refs[key(r)] for r in c] for c in candidates]
        scores = score_impressions(
            self.model, vectors, history_rows, candidate_rows, batch_size=self.batch_size, device=self.device
        )
        for user, user_scores in enumerate(scores):
            if not np.all(np.isfinite(user_scores)):  # finite news vectors, so the user encoder or the scorer
                raise ValueError(
                    f"the model's scores for user {user} hold NaN or inf although every news vector is finite: the "
                    "model's user encoder is broken (weights holding NaN or inf, e.g. a diverged run)"
                )
        return [Recommendation(s, np.argsort(-s.astype(np.float64), kind="stable")) for s in scores]

    def recommend(self, history: Iterable[NewsRef], candidates: Iterable[NewsRef]) -> Recommendation:
        """Scores and ranks `candidates` for a user who clicked `history` (oldest first).

        Returns:
            `Recommendation` (unpacks as ``scores, ranking``): ``scores (C,)`` float32 in input order and
            ``ranking (C,)``, candidate positions from best to worst (ties in input order).

        Raises:
            KeyError: an id (a plain string) is not in the cache; the message names it.
            TypeError: `history` or `candidates` is a string, None or not iterable, or a title is not a string.
            ValueError: a vector or score holds NaN or inf (the message names the title, or the model's encoder).
        """
        return self.recommend_batch([_as_list(history, "a history")], [_as_list(candidates, "a candidate list")])[0]
