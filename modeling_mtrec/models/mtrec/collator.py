"""Batches MIND train samples / eval impressions into the tensors `MTRecModel` consumes.

A batch holds every distinct news it touches exactly once (``news_input_ids (N, L)``), and the users'
histories and candidates as positions into those N rows (``history_index (B, H)``, ``candidate_index
(B, C)``). A user's history shares most news with other users' histories and candidates, so encoding each
distinct title once with BERT, instead of once per mention, is the main saving of MTRec's training loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from datasets import Dataset

from ...data.padding import IGNORE_INDEX, pad_right
from .processing_mtrec import entity_field_ids, multi_field_batch

__all__ = ["MTRecCollator"]


@dataclass
class MTRecCollator:
    """Pads a list of samples into one de-duplicated MTRec batch.

    A feature is either a training sample from `build_train_samples` (``history``, ``positive``,
    ``negatives``) or an evaluation impression from `build_eval_impressions` (``history``, ``candidates``,
    ``labels``); other keys (e.g. ``impression_id``) are dropped, as the output holds tensors only. The ints in
    a feature are rows of `news`.

    For a training sample the candidates are the positive (column 0) followed by `num_negatives` (K) news
    drawn from the sample's ``negatives`` pool: without replacement when the pool has at least K news, with
    replacement when it has fewer (as NRMS and MTRec do for short impressions). Drawing at batch time gives
    fresh negatives every epoch. The draw of a sample is a pure function of (`seed`, `epoch`, the sample's
    content): it does not depend on which batch, process or dataloader worker collates the sample, nor on how
    many batches were collated before, so a run resumed from a checkpoint (whose skipped batches are never
    collated) draws exactly the negatives of an uninterrupted run. `MTRecTrainer` calls `set_epoch` at the
    start of every epoch. Passing a `generator` instead makes the draws come from it, in collation order.

    Distinct news are numbered in order of first appearance: sample 0's history, then its candidates, then
    sample 1's history, and so on.

    Args:
        news (`Dataset`): the tokenised news table (`tokenize_news`): ``input_ids`` and, when
            `with_aux_labels`, ``category_label`` and ``ner_labels``.
        num_negatives (`int`, *optional*, defaults to 4): K, negatives per positive (MTRec, Sec. 4.1: 4).
        pad_token_id (`int`, *optional*, defaults to 0): padding of ``news_input_ids`` (BERT's [PAD] is 0).
        seed (`int`, *optional*, defaults to 0): seeds the negative sampling.
        generator (`numpy.random.Generator`, *optional*): draw negatives from this stateful generator instead
            (reproducible for a fixed collation order only; not exact across a resume).
        epoch (`int`, *optional*, defaults to 0): the training epoch, part of the draw's key (see `set_epoch`).
        with_aux_labels (`bool`, *optional*, defaults to `True`): add ``category_labels`` and ``ner_labels``
            for MTRec's auxiliary tasks, and ``sentiment_labels (N,)`` when `news` has a ``sentiment_label`` column
            (`tokenize_news` of a corpus with sentiment labels).
        entity_buckets (`int`, *optional*): for a multi-field MTRec (`config.use_multi_field`), its
            `config.num_entity_buckets`: the batch then also holds ``news_category_ids (N,)`` (the category label,
            -100 for none) and ``news_entity_ids (N, E)`` (`entity_field_ids` of each title, 0-padded, E >= 1).
        return_news_rows (`bool`, *optional*, defaults to `False`): add ``news_rows (N,)``, the row of `news`
            behind each of the N distinct news; `MTRecTrainer` sets it for its history-vector cache and removes
            the key before calling the model.

    Example (K = 2; titles are [CLS] ... [SEP] with [CLS] = 101, [SEP] = 102):

        >>> from datasets import Dataset
        >>> news = Dataset.from_dict({
        ...     "input_ids": [[101, 7, 102], [101, 8, 9, 102], [101, 5, 102], [101, 6, 102], [101, 4, 102]],
        ...     "category_label": [0, 1, 0, -100, 1],
        ...     "ner_labels": [[-100, 1, -100], [-100, 1, 2, -100], [-100, 0, -100], [-100, 0, -100],
        ...                    [-100, 1, -100]],
        ... })
        >>> collator = MTRecCollator(news, num_negatives=2, seed=2)
        >>> batch = collator([
        ...     {"history": [0, 1], "positive": 2, "negatives": [3]},  # pool of 1 < K: drawn with replacement
        ...     {"history": [], "positive": 3, "negatives": [4, 0, 1]},  # pool of 3 >= K: without replacement
        ... ])

        The second sample drew news 0 and 1 as negatives, already in the first sample's history, so the batch
        holds N = 4 distinct news (rows 0, 1, 2, 3 in order of first appearance); L = 4 is the longest of
        their titles, H = 2 the longest history and C = 1 + K = 3:

        >>> batch["news_input_ids"]
        tensor([[101,   7, 102,   0],
                [101,   8,   9, 102],
                [101,   5, 102,   0],
                [101,   6, 102,   0]])
        >>> batch["news_attention_mask"]
        tensor([[1, 1, 1, 0],
                [1, 1, 1, 1],
                [1, 1, 1, 0],
                [1, 1, 1, 0]])
        >>> batch["category_labels"]
        tensor([   0,    1,    0, -100])
        >>> batch["ner_labels"][1]
        tensor([-100,    1,    2, -100])
        >>> batch["history_index"], batch["history_mask"]
        (tensor([[0, 1],
                [0, 0]]), tensor([[ True,  True],
                [False, False]]))
        >>> batch["candidate_index"], batch["candidate_mask"]
        (tensor([[2, 3, 3],
                [3, 0, 1]]), tensor([[True, True, True],
                [True, True, True]]))
        >>> batch["labels"]
        tensor([[1, 0, 0],
                [1, 0, 0]])

        An evaluation batch pads the candidates of shorter impressions with index 0, mask `False` and label
        -100:

        >>> batch = collator([
        ...     {"impression_id": "7", "history": [1], "candidates": [2, 3, 4], "labels": [0, 1, 0]},
        ...     {"impression_id": "8", "history": [2, 0], "candidates": [0, 3], "labels": [1, 0]},
        ... ])
        >>> batch["candidate_index"], batch["labels"]
        (tensor([[1, 2, 3],
                [4, 2, 0]]), tensor([[   0,    1,    0],
                [   1,    0, -100]]))
        >>> batch["candidate_mask"]
        tensor([[ True,  True,  True],
                [ True,  True, False]])
    """

    news: Dataset = field(repr=False)
    num_negatives: int = 4
    pad_token_id: int = 0
    seed: int = 0
    generator: np.random.Generator | None = field(default=None, repr=False)
    with_aux_labels: bool = True
    epoch: int = 0
    return_news_rows: bool = False
    entity_buckets: int | None = None

    def __post_init__(self) -> None:
        if self.num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1, got {self.num_negatives}")
        columns = ["input_ids"] + (["category_label", "ner_labels"] if self.with_aux_labels else [])
        missing = [name for name in columns if name not in self.news.column_names]
        if missing:
            raise ValueError(
                f"the news table lacks column(s) {missing} (has {self.news.column_names}); "
                "build it with tokenize_news"
                + (" or pass with_aux_labels=False" if self.with_aux_labels else "")
            )
        # Converted to python lists once: reading rows from Arrow per batch would dominate the collator's time.
        table = self.news.select_columns(columns).with_format(None)[:]
        self._input_ids: list[list[int]] = table["input_ids"]
        self._category_labels: list[int] = table.get("category_label", [])
        self._ner_labels: list[list[int]] = table.get("ner_labels", [])
        self._fields = None
        if self.entity_buckets is not None:
            fields = self.news.select_columns(["category_label", "title_entities"]).with_format(None)[:]
            entities = [entity_field_ids(value, self.entity_buckets) for value in fields["title_entities"]]
            self._fields = (fields["category_label"], entities)
        self._sentiment_labels: list[int] | None = None
        if self.with_aux_labels and "sentiment_label" in self.news.column_names:
            self._sentiment_labels = self.news.select_columns(["sentiment_label"]).with_format(None)[:]["sentiment_label"]

    def set_epoch(self, epoch: int) -> None:
        """Negatives are drawn afresh each epoch: the epoch is part of every draw's key."""
        self.epoch = int(epoch)

    def _sample_negatives(self, feature: dict[str, Any]) -> list[int]:
        pool = feature["negatives"]
        if len(pool) == 0:
            raise ValueError(
                "a training sample has an empty negatives pool (build_train_samples never makes one)"
            )
        generator = self.generator
        if generator is None:
            # Python's hash of a tuple of ints is fixed across processes (no hash randomisation for ints), so
            # every worker and every resumed run derives the same key for the same sample.
            key = hash((int(feature["positive"]), tuple(feature["history"]), tuple(pool))) & 0xFFFFFFFFFFFFFFFF
            generator = np.random.Generator(np.random.Philox(key=[key, (self.seed << 32) + self.epoch]))
        k = self.num_negatives
        picks = generator.choice(len(pool), size=k, replace=len(pool) < k)
        return [int(pool[i]) for i in picks]

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("cannot collate an empty list of features")
        train = "positive" in features[0]
        required = ("history", "positive", "negatives") if train else ("history", "candidates", "labels")
        for b, feature in enumerate(features):
            missing = [key for key in required if key not in feature]
            if missing:
                kind = "training sample" if train else "evaluation impression"
                raise ValueError(
                    f"feature {b} lacks {missing} (feature 0 is a {kind}; got keys {sorted(feature)}); "
                    "a batch must hold only training samples or only evaluation impressions"
                )

        histories = [[int(row) for row in feature["history"]] for feature in features]
        if train:
            candidates = [[int(f["positive"]), *self._sample_negatives(f)] for f in features]
            labels = [[1] + [0] * self.num_negatives for _ in features]
        else:
            candidates = [[int(row) for row in feature["candidates"]] for feature in features]
            labels = [[int(label) for label in feature["labels"]] for feature in features]
            for b, (rows, row_labels) in enumerate(zip(candidates, labels, strict=True)):
                if len(rows) != len(row_labels):
                    raise ValueError(f"feature {b}: {len(rows)} candidates but {len(row_labels)} labels")
                if not rows:  # nothing to score; a batch of such impressions would hold no news to index
                    name = features[b].get("impression_id")
                    raise ValueError(
                        f"feature {b}{f' (impression {name!r})' if name is not None else ''} has no candidates: "
                        "nothing to score (build_eval_impressions never makes such a row)"
                    )

        # De-duplicate: news row -> position among the N distinct news of the batch.
        position: dict[int, int] = {}
        for history, row_candidates in zip(histories, candidates, strict=True):
            for row in history:
                position.setdefault(row, len(position))
            for row in row_candidates:
                position.setdefault(row, len(position))
        rows = list(position)  # dicts keep insertion order: rows[n] is the news row at position n
        if rows and (min(rows) < 0 or max(rows) >= len(self._input_ids)):
            bad = min(rows) if min(rows) < 0 else max(rows)
            raise ValueError(f"news row {bad} out of range for a news table of {len(self._input_ids)} rows")

        news_input_ids, title_mask = pad_right([self._input_ids[row] for row in rows], self.pad_token_id)  # (N, L)
        # An empty history still gets one (masked) column, so the user encoder always has something to pool.
        history_index, history_mask = pad_right([[position[r] for r in h] for h in histories], min_width=1)  # (B, H)
        candidate_index, candidate_mask = pad_right([[position[r] for r in c] for c in candidates])  # (B, C)
        label_tensor, _ = pad_right(labels, IGNORE_INDEX, width=candidate_index.shape[1])  # (B, C)

        batch = {"news_input_ids": news_input_ids, "news_attention_mask": title_mask.long()}
        if self.with_aux_labels:
            batch["category_labels"] = torch.tensor(
                [self._category_labels[row] for row in rows], dtype=torch.long
            )  # (N,)
            batch["ner_labels"], _ = pad_right(
                [self._ner_labels[row] for row in rows], IGNORE_INDEX, width=news_input_ids.shape[1]
            )  # (N, L)
            if self._sentiment_labels is not None:
                batch["sentiment_labels"] = torch.tensor(
                    [self._sentiment_labels[row] for row in rows], dtype=torch.long
                )  # (N,)
        if self._fields is not None:  # the multi-field variant's category and entity fields
            fields = multi_field_batch(*self._fields, rows)
            batch["news_category_ids"], batch["news_entity_ids"] = fields["category_ids"], fields["entity_ids"]
        if self.return_news_rows:  # keys of MTRecTrainer's history-vector cache
            batch["news_rows"] = torch.tensor(rows, dtype=torch.long)  # (N,)
        batch.update(
            history_index=history_index,
            history_mask=history_mask,
            candidate_index=candidate_index,
            candidate_mask=candidate_mask,
            labels=label_tensor,
        )
        return batch
