"""Title tokenisation with the two auxiliary labels of MTRec: the news category and BIO entity tags.

MTRec (Bi et al., Findings of ACL 2022, Sec. 3.2) trains the BERT news encoder with two auxiliary tasks next to
click prediction: category classification from the [CLS] vector and named-entity recognition over the title
tokens. MIND gives no token-level NER labels, only Wikidata entities with *character* offsets into the title
(``title_entities``). This module turns those offsets into character spans, aligns the spans to word pieces
through the fast tokenizer's offset mapping, and writes one tokenised row per news:

    input_ids       [CLS] ... [SEP], at most ``max_title_length`` ids, unpadded
    category_label  category2id[category], -100 when unknown
    ner_labels      0=O, 1=B, 2=I per input id; -100 on [CLS]/[SEP]

NOTE: the paper tags entities with an entity type (its NER head predicts typed BIO labels); MIND's ``Type``
field is a coarse Wikidata class that is not a stable NER tag set, so we keep untyped B/I/O, which is what
the titles can actually support. Annotations that do not fit the title (broken JSON, an offset where no
surface form sits) are not guessed at: that news gets all-O tags and the problem is counted in `LoadStats`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from datasets import Dataset, Features, List, Value
from transformers import PreTrainedTokenizerBase

from ...data.mind import EntityAnnotationError, count_titles_without_text, parse_title_entities
from ...data.padding import IGNORE_INDEX, pad_right
from ...data.stats import LoadStats
from .configuration_mtrec import MTRecConfig

logger = logging.getLogger(__name__)

NER_LABELS: list[str] = ["O", "B", "I"]
NER_O, NER_B, NER_I = 0, 1, 2

Span = tuple[int, int]


def _utf16_to_codepoint(title: str, offset: int) -> int | None:
    """Map an offset counted in UTF-16 code units to a Python (code point) index, None if it splits a pair.

    Annotators written in C#/JavaScript count characters outside the Basic Multilingual Plane (emoji) as two
    units, which shifts every later offset by one per such character.
    """
    units = 0
    for index, char in enumerate(title):
        if units == offset:
            return index
        units += 2 if ord(char) > 0xFFFF else 1
        if units > offset:
            return None
    return len(title) if units == offset else None


def _find_surface_form(title: str, offset: int, surface_forms: Sequence[str], first: int) -> Span | None:
    """The span of the surface form that sits at ``offset`` (``surface_forms[first]`` tried first), or None."""
    order = ([first] if 0 <= first < len(surface_forms) else []) + [
        i for i in range(len(surface_forms)) if i != first
    ]
    for i in order:
        surface = surface_forms[i]
        if surface and offset >= 0 and title[offset : offset + len(surface)] == surface:
            return offset, offset + len(surface)
    return None


def _merge_spans(spans: list[Span]) -> tuple[list[Span], int]:
    """Sort spans, drop duplicates and merge overlapping ones (touching spans stay apart: they are B ... B).
    Returns the spans and how many were merged into an earlier one."""
    merged: list[Span] = []
    overlaps = 0
    for start, end in sorted(set(spans)):
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            overlaps += 1
        else:
            merged.append((start, end))
    return merged, overlaps


def title_entity_spans(title: str, title_entities: str, stats: LoadStats | None = None) -> list[Span]:
    """Character spans ``(start, end)`` of the entities annotated in a MIND title, sorted and merged.

    Every ``OccurrenceOffsets[i]`` must have a surface form at it: ``SurfaceForms[i]`` is tried first, then the
    entity's other surface forms (MIND lists them in occurrence order, but not always one per offset). If the
    code point offset does not fit and the title has characters outside the BMP, the offset is re-read as
    UTF-16 code units. Overlapping spans are merged into one (and counted under ``"overlapping_entity_spans"``
    in `stats`: BIO cannot tag two mentions that share characters); spans that only touch are kept apart so two
    adjacent entities get ``B ... B``. The same mention listed twice is one span, not an overlap.

    Args:
        title: the news title (column 4 of news.tsv).
        title_entities: the ``title_entities`` JSON (column 7); ``""`` or ``"[]"`` means no entities.
        stats: where to count merged spans, if given.

    Raises:
        EntityAnnotationError: ``reason="broken_entity_json"`` or ``reason="entity_offset_mismatch"``.

    Example:
        >>> title_entity_spans("Acme Corp buys Acme", '[{"OccurrenceOffsets": [0, 15], '
        ...                    '"SurfaceForms": ["Acme Corp", "Acme"]}]')
        [(0, 9), (15, 19)]
    """
    entities = parse_title_entities(title_entities)
    has_astral = any(ord(char) > 0xFFFF for char in title)
    spans: list[Span] = []
    for entity in entities:
        if not isinstance(entity, dict):
            raise EntityAnnotationError("broken_entity_json", f"entity {entity!r} is not a JSON object")
        offsets = entity.get("OccurrenceOffsets")
        surface_forms = entity.get("SurfaceForms")
        if not isinstance(offsets, list) or not all(
            isinstance(o, int) and not isinstance(o, bool) for o in offsets
        ):
            raise EntityAnnotationError(
                "broken_entity_json", f"entity without a list of integer OccurrenceOffsets: {entity!r}"
            )
        if not isinstance(surface_forms, list) or not all(isinstance(s, str) for s in surface_forms):
            raise EntityAnnotationError(
                "broken_entity_json", f"entity without a list of string SurfaceForms: {entity!r}"
            )
        for i, offset in enumerate(offsets):
            span = _find_surface_form(title, offset, surface_forms, i)
            if span is None and has_astral:
                codepoint = _utf16_to_codepoint(title, offset)
                if codepoint is not None:
                    span = _find_surface_form(title, codepoint, surface_forms, i)
            if span is None:
                raise EntityAnnotationError(
                    "entity_offset_mismatch",
                    f"no surface form of {surface_forms!r} at offset {offset} of a title of length {len(title)}",
                )
            spans.append(span)
    merged, overlaps = _merge_spans(spans)
    if overlaps and stats is not None:
        stats["overlapping_entity_spans"] += overlaps
    return merged


def bio_tags(offsets: Sequence[Sequence[int]], spans: Sequence[Span]) -> list[int]:
    """BIO tags (0=O, 1=B, 2=I) for the tokens of one title, from a fast tokenizer's offset mapping.

    A token whose offset is ``(0, 0)`` (an empty character range: [CLS], [SEP], padding) gets -100. The first
    word piece that overlaps a span gets B and the span's later pieces get I, so a word split into pieces is
    ``B I I`` and two adjacent entities are ``B ... B``. An entity cut by truncation keeps the tags of the pieces
    that remain (its first piece still says B).

    Args:
        offsets: ``(start, end)`` character offsets per token, as returned with ``return_offsets_mapping=True``.
        spans: sorted, non-overlapping entity spans from `title_entity_spans`.

    Example:
        >>> bio_tags([(0, 0), (0, 4), (5, 8), (8, 10), (11, 14), (0, 0)], [(5, 10)])
        [-100, 0, 1, 2, 0, -100]
    """
    tags: list[int] = []
    span_index = 0
    previous_span = -1  # index of the span the previous token belonged to, -1 for none
    for start, end in offsets:
        if start == end:
            tags.append(IGNORE_INDEX)
            continue
        while span_index < len(spans) and spans[span_index][1] <= start:
            span_index += 1
        if span_index < len(spans) and spans[span_index][0] < end:
            tags.append(NER_I if span_index == previous_span else NER_B)
            previous_span = span_index
        else:
            tags.append(NER_O)
            previous_span = -1
    return tags


def _entities_cut_off(title: str, offsets: Sequence[Sequence[int]], spans: Sequence[Span]) -> bool:
    """True when some entity has text after the last kept token, i.e. truncation cut (part of) it off."""
    last_end = max((end for start, end in offsets if end > start), default=0)
    return any(end > last_end and title[max(start, last_end) : end].strip() for start, end in spans)


def _tokenization_fingerprint(
    news: Dataset,
    titles: Sequence[str],
    title_entities: Sequence[str],
    categories: Sequence[str],
    tokenizer: PreTrainedTokenizerBase,
    max_title_length: int,
    category2id: Mapping[str, int],
) -> str:
    """A hash of everything the tokenised table depends on, so a cached table is reused only when valid.

    ``news._fingerprint`` already hashes the table's content for in-memory datasets; the titles, entities and
    categories are hashed as well because a table built by a generator is fingerprinted by its path, not its
    content. The tokenizer enters through its serialised `tokenizers` pipeline (vocab, normaliser, template),
    which changes whenever its output would.
    """
    hasher = hashlib.sha256()
    hasher.update(str(news._fingerprint).encode())
    for column in (titles, title_entities, categories):
        hasher.update("\x1e".join(column).encode("utf-8", "surrogatepass"))
        hasher.update(b"\x1d")
    hasher.update(type(tokenizer).__name__.encode())
    hasher.update(str(len(tokenizer)).encode())
    hasher.update(str(getattr(tokenizer, "name_or_path", "")).encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        pipeline = json.loads(backend.to_str())
        # Calling the tokenizer stores its last truncation/padding settings in the pipeline: not part of its identity.
        pipeline.pop("truncation", None)
        pipeline.pop("padding", None)
        hasher.update(json.dumps(pipeline, sort_keys=True).encode())
    hasher.update(str(max_title_length).encode())
    hasher.update(json.dumps(sorted(category2id.items())).encode())
    return hasher.hexdigest()[:16]


def check_tokenizer(tokenizer: PreTrainedTokenizerBase, config, source: str | os.PathLike = "") -> None:
    """Raises `ValueError` unless `tokenizer` belongs to a model of `config` (an `MTRecConfig`, or the news encoder's
    own `BertConfig`): as many tokens as the news encoder's embedding rows, and the special tokens the titles are
    built from ([CLS], [SEP], [PAD], [UNK]) within them, with [PAD] the encoder's padding id.

    A folder whose tokenizer files are missing loads a tokenizer of a handful of special tokens: every word becomes
    [UNK] and every title the same vector, without any error. `MTRecRecommender` and `train_mtrec.py` check here.

    Args:
        source: where the tokenizer came from, for the message (e.g. the model folder).
    """
    encoder = getattr(config, "encoder_config", config)
    where = f"{os.fspath(source)}: " if source else ""
    size, rows = len(tokenizer), encoder.vocab_size
    if size != rows:
        raise ValueError(
            f"{where}the tokenizer has {size} tokens but the news encoder's embedding table has {rows} rows: it is "
            "not this model's tokenizer (are the tokenizer files missing from the folder?)"
        )
    special = {name: getattr(tokenizer, f"{name}_token_id", None) for name in ("cls", "sep", "pad", "unk")}
    missing = [name for name, token_id in special.items() if token_id is None or not 0 <= token_id < rows]
    if missing:
        raise ValueError(f"{where}the tokenizer lacks the special token(s) {missing} that titles are built from")
    pad = getattr(encoder, "pad_token_id", None)
    if pad is not None and special["pad"] != pad:
        raise ValueError(
            f"{where}the tokenizer pads with id {special['pad']} but the news encoder's pad_token_id is {pad}"
        )


def tokenize_titles(
    tokenizer: PreTrainedTokenizerBase, titles: Sequence[str | None], max_title_length: int, **kwargs: Any
):
    """The one tokenisation of titles, for training and inference alike: ``[CLS] ... [SEP]``, truncated to
    `max_title_length` tokens (both included), unpadded. `kwargs` go to the tokenizer (e.g. offsets)."""
    return tokenizer([title or "" for title in titles], truncation=True, max_length=max_title_length, **kwargs)


def title_batches(
    token_lists: Sequence[Sequence[int]], pad_token_id: int, batch_size: int, *, sort_by_length: bool = True
) -> Iterator[tuple[list[int], dict[str, Any]]]:
    """`MTRecModel.encode_items` inputs for unpadded title token lists: ``(rows, {"input_ids", "attention_mask"})``
    per batch of `batch_size` titles, `rows` their positions in `token_lists`.

    With `sort_by_length` the titles are batched sorted by length so that a batch pads to nearly its own length:
    titles vary from a few to `max_title_length` tokens, and padding every title to the longest wastes up to
    half of BERT's work. Padded positions are masked, so the padding width changes a vector only by float32
    rounding (~1e-7 relative: other matrix shapes, other summation order). Without it, every batch is padded to
    the longest title of all, as the Trainer's evaluation batches nearly always are (a batch of a thousand titles
    holds one of `max_title_length` tokens), which reproduces their vectors bit for bit in that case.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = list(range(len(token_lists)))
    longest = max((len(tokens) for tokens in token_lists), default=0)
    if sort_by_length:
        order.sort(key=lambda i: len(token_lists[i]))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = max(len(token_lists[i]) for i in rows) if sort_by_length else longest
        if width == 0:
            raise ValueError(f"news {rows[0]} has no tokens (an empty title still has [CLS] [SEP])")
        input_ids, mask = pad_right([token_lists[i] for i in rows], pad_token_id, width=width)  # (b, L)
        yield rows, {"input_ids": input_ids, "attention_mask": mask.long()}


def title_pad_token_id(config: MTRecConfig) -> int:
    """The id that pads titles: the news encoder's ``pad_token_id`` (0 when it has none)."""
    pad = getattr(config.encoder_config, "pad_token_id", None)
    return 0 if pad is None else int(pad)


def raw_title_batches(
    tokenizer: PreTrainedTokenizerBase,
    titles: Sequence[str],
    config: MTRecConfig,
    batch_size: int,
    max_title_length: int | None = None,
) -> Iterator[tuple[list[int], dict[str, Any]]]:
    """`MTRecModel.encode_items` inputs for raw titles, tokenised exactly as `tokenize_news` does
    (`tokenize_titles`), so a title gives the same vector as through a tokenised news table; length-sorted
    `title_batches`. Every title must be a string (`TypeError` naming the first that is not: a raw title comes
    from a caller, not from a file where a missing title is an empty one).

    Args:
        max_title_length: tokens per title, [CLS]/[SEP] included; defaults to ``config.max_title_length``.
    """
    for position, title in enumerate(titles):
        if not isinstance(title, str):
            raise TypeError(f"title {position} must be a string, got {type(title).__name__}: {title!r}")
    max_title_length = config.max_title_length if max_title_length is None else max_title_length
    token_lists = tokenize_titles(tokenizer, titles, max_title_length)["input_ids"] if len(titles) else []
    return title_batches(token_lists, title_pad_token_id(config), batch_size)


def entity_field_ids(title_entities: str | None, num_buckets: int) -> list[int]:
    """The multi-field variant's entity ids of one title (`MTRecConfig.use_multi_field`): each distinct entity of the
    ``title_entities`` JSON (its ``WikidataId``, else its ``Label``: EB-NeRD links no knowledge base) hashed by CRC-32
    into 1..`num_buckets` (0 is padding), in order of appearance. A stable hash, so a saved model and the data agree
    in any process; broken JSON gives no entity (the NER task counts it).

    >>> entity_field_ids('[{"WikidataId": "Q30", "Label": "USA"}]', 100)
    [10]
    """
    try:
        entities = parse_title_entities(title_entities or "")
    except EntityAnnotationError:
        return []
    return entity_bucket_ids(entities, num_buckets)


def entity_bucket_ids(entities: list, num_buckets: int) -> list[int]:
    """`entity_field_ids` of parsed entities (a list of MIND entity objects; anything else in it is skipped)."""
    keys = []
    for entity in entities:
        if isinstance(entity, dict):
            key = entity.get("WikidataId") or entity.get("Label")
            if isinstance(key, str) and key and key not in keys:
                keys.append(key)
    return [zlib.crc32(key.encode("utf-8", "surrogatepass")) % num_buckets + 1 for key in keys]


def multi_field_batch(
    category_labels: Sequence[int], entity_lists: Sequence[Sequence[int]], rows: Sequence[int]
) -> dict[str, torch.Tensor]:
    """``{"category_ids" (n,), "entity_ids" (n, E)}`` of news `rows` (entity ids right-padded with 0, E >= 1): the
    multi-field inputs of `MTRecModel.encode_items`."""
    entity_ids, _ = pad_right([list(entity_lists[row]) for row in rows], 0, min_width=1)
    return {"category_ids": torch.tensor([category_labels[row] for row in rows], dtype=torch.long),
            "entity_ids": entity_ids}


MULTI_FIELD_NEEDS = (
    "a multi-field MTRec (config.use_multi_field) encodes each news from its title, category and title entities"
)


def raw_news_fields(
    categories: Sequence[str | None],
    title_entities: Sequence[str | list | None],
    config: MTRecConfig,
    stats: LoadStats | None = None,
) -> tuple[list[int], list[list[int]]]:
    """The multi-field inputs of news given by a caller (`MTRecRecommender`): (category labels, `entity_field_ids` per
    news), as `tokenize_news` and the collator make them from news.tsv's columns, so a news gets the same vector.

    A category is a string, ``""`` or None for none; one that is not in ``config.category2id`` gets -100 as in
    training (the model's row for no or an unknown category) and is counted as ``"unknown_category"`` in `stats`
    (logged as a warning when `stats` is None: nothing is dropped silently). Title entities are MIND's
    ``title_entities`` JSON (EB-NeRD's reader writes the same) or the list it holds; ``""``, ``"[]"`` and None mean
    none. Unlike a file's annotation, which training reads as no entity when it is broken, a caller's broken one is
    an error: `TypeError` or `ValueError` naming its position.
    """
    categories = list(categories)
    title_entities = list(title_entities)
    if len(categories) != len(title_entities):
        raise ValueError(f"got {len(categories)} categories but {len(title_entities)} title_entities")
    category2id = config.category2id
    labels, unknown = [], []
    for position, category in enumerate(categories):
        if category is not None and not isinstance(category, str):
            raise TypeError(f"category {position} must be a string, got {type(category).__name__}: {category!r}")
        category = category or ""
        label = category2id.get(category, IGNORE_INDEX) if category.strip() else IGNORE_INDEX  # as tokenize_news
        if label == IGNORE_INDEX and category.strip():
            unknown.append(category)
        labels.append(label)
    if unknown:
        if stats is not None:
            stats["unknown_category"] += len(unknown)
        else:
            logger.warning(
                "%d of %d news have a category the model was not trained on (first: %r): they get its vector for no "
                "category, as in training", len(unknown), len(categories), unknown[0],
            )
    entity_lists = []
    for position, value in enumerate(title_entities):
        where = f"title_entities {position}"
        if isinstance(value, list):
            entities = value
            try:
                value = json.dumps(value, ensure_ascii=False)
            except (TypeError, ValueError) as error:
                raise ValueError(f"{where}: not JSON-serialisable: {error}") from None
        elif value is None or isinstance(value, str):
            try:
                entities = parse_title_entities(value or "")
            except EntityAnnotationError as error:
                raise ValueError(f"{where}: {error}") from None
        else:
            raise TypeError(
                f"{where} must be MIND's title_entities JSON (a string) or the list it holds, got "
                f"{type(value).__name__}: {value!r}"
            )
        bad = next((i for i, entity in enumerate(entities) if not isinstance(entity, dict)), None)
        if bad is not None:
            raise ValueError(f"{where}: entity {bad} is not a JSON object: {entities[bad]!r}")
        entity_lists.append(entity_field_ids(value, config.num_entity_buckets))
    return labels, entity_lists


def raw_news_batches(
    tokenizer: PreTrainedTokenizerBase,
    titles: Sequence[str],
    config: MTRecConfig,
    batch_size: int,
    categories: Sequence[str | None] | None = None,
    title_entities: Sequence[str | list | None] | None = None,
    stats: LoadStats | None = None,
) -> Iterator[tuple[list[int], dict[str, Any]]]:
    """`raw_title_batches`, with each news' category and entity ids (`raw_news_fields`) added for a multi-field MTRec,
    which needs both (`ValueError` saying so when either is None). A single-field MTRec reads the titles alone: the
    fields are then checked for length only and not read."""
    for name, values in (("categories", categories), ("title_entities", title_entities)):
        if values is not None and len(values) != len(titles):
            raise ValueError(f"got {len(titles)} titles but {len(values)} {name}")
    batches = raw_title_batches(tokenizer, titles, config, batch_size)
    if not config.use_multi_field:
        return batches
    if categories is None or title_entities is None:
        raise ValueError(
            f"{MULTI_FIELD_NEEDS}: pass categories=[...] (MIND's category, '' for none) and title_entities=[...] "
            "(MIND's title_entities JSON or its list, '[]' for none)"
        )
    labels, entity_lists = raw_news_fields(categories, title_entities, config, stats)
    return ((rows, {**inputs, **multi_field_batch(labels, entity_lists, rows)}) for rows, inputs in batches)


def sentiment_vocabulary(sentiments: Sequence[str | None]) -> dict[str, int]:
    """Sentiment -> label id over the distinct non-empty values, sorted (EB-NeRD: Negative 0, Neutral 1, Positive 2)."""
    return {value: i for i, value in enumerate(sorted({v for v in sentiments if v and v.strip()}))}


def tokenize_news(
    news: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    max_title_length: int = MTRecConfig.max_title_length,
    category2id: dict[str, int] | None = None,
    stats: LoadStats | None = None,
    cache_dir: str | None = None,
    sentiment2id: dict[str, int] | None = None,
    ner_labels: bool = True,
) -> Dataset:
    """Tokenise every title and add ``input_ids``, ``category_label`` and ``ner_labels`` (all columns kept), and
    ``sentiment_label`` when the table has a ``sentiment`` column (EB-NeRD, own tables; `modeling_mtrec.data.formats`).

    Entity spans and categories are resolved in one plain pass first, so the problem counts are exact and are
    reported on a cached run too; the tokenisation itself is a batched `Dataset.map`, cached under
    ``cache_dir/news-tokens-{fingerprint}.arrow`` when ``cache_dir`` is given.

    Counted in ``stats`` (logged here when ``stats`` is None): ``broken_entity_json`` and
    ``entity_offset_mismatch`` (that news gets all-O tags), ``overlapping_entity_spans`` (merged into one),
    ``unknown_category`` and ``empty_category`` (``category_label=-100``; an empty category is never a class),
    ``empty_title`` and ``title_without_words`` (e.g. emoji only: kept, but [CLS] [SEP] or [UNK]s is all the encoder
    sees of them) and ``title_truncated_entities`` (news whose entity runs past ``max_title_length`` tokens; the
    pieces that remain keep their tags); with a ``sentiment`` column, ``empty_sentiment`` and ``unknown_sentiment``
    (``sentiment_label=-100``).

    Args:
        news: the news table of `read_news` (needs ``title``, ``title_entities`` and ``category``).
        tokenizer: a *fast* tokenizer; its offset mapping aligns entity characters to word pieces.
        max_title_length: most tokens per title, [CLS] and [SEP] included (MTRec uses 30).
        category2id: category -> label id; None builds it from this table's categories, sorted.
        sentiment2id: sentiment -> label id, read only when the table has a ``sentiment`` column; None builds it from
            the column's values, sorted (EB-NeRD: Negative 0, Neutral 1, Positive 2).
        stats: counter to add the problems to.
        cache_dir: folder for the cached tokenised table; None disables the explicit cache file.
        ner_labels: False for a corpus whose titles carry no entity annotations (`data.formats.label_report`'s NER
            "off": xMIND, Adressa): its titles are unannotated, not entity-free, so every tag is -100 (ignored)
            instead of an O that would teach the NER head that nothing is an entity.

    Returns:
        ``news`` with ``input_ids`` (list[int]), ``category_label`` (int), ``ner_labels`` (list[int]) and, with a
        ``sentiment`` column, ``sentiment_label`` (int) added.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"tokenize_news needs a fast tokenizer (one backed by the `tokenizers` library), got "
            f"{type(tokenizer).__name__}: its offset mapping is what aligns entity offsets to word pieces"
        )
    if max_title_length < 2:
        raise ValueError(
            f"max_title_length must leave room for [CLS] and [SEP] (>= 2), got {max_title_length}"
        )
    missing = [c for c in ("title", "title_entities", "category") if c not in news.column_names]
    if missing:
        raise ValueError(f"the news table lacks column(s) {missing}; it has {news.column_names}")
    clashing = [c for c in ("input_ids", "category_label", "ner_labels", "sentiment_label") if c in news.column_names]
    if clashing:
        raise ValueError(f"the news table is already tokenised: it has column(s) {clashing}")

    own_stats = stats is None
    stats = LoadStats() if stats is None else stats
    titles: list[str] = [t or "" for t in news["title"]]
    entity_annotations: list[str] = [e or "" for e in news["title_entities"]]
    categories: list[str] = [c or "" for c in news["category"]]
    if category2id is None:
        category2id = {category: i for i, category in enumerate(sorted({c for c in categories if c.strip()}))}

    # Plain pass: entity spans and category labels, counted here so batching or caching cannot skew the counts.
    spans_per_news: list[list[Span]] = []
    for title, annotation in zip(titles, entity_annotations, strict=True):
        try:
            spans_per_news.append(title_entity_spans(title, annotation, stats))
        except EntityAnnotationError as error:
            stats[error.reason] += 1
            spans_per_news.append([])
    # A news without a category gets no category label: it is no class of its own, even in a given category2id.
    empty = [not category.strip() for category in categories]
    category_labels = [IGNORE_INDEX if no_category else category2id.get(category, IGNORE_INDEX)
                       for category, no_category in zip(categories, empty, strict=True)]
    if any(empty):
        stats["empty_category"] += sum(empty)
    count_titles_without_text(titles, stats)
    unknown = sum(label == IGNORE_INDEX for label in category_labels) - sum(empty)
    if unknown:
        stats["unknown_category"] += unknown
    sentiment_labels = None
    if "sentiment" in news.column_names:  # the third auxiliary task's labels, as the category's
        sentiments = [value or "" for value in news["sentiment"]]
        if sentiment2id is None:
            sentiment2id = sentiment_vocabulary(sentiments)
        sentiment_labels = [sentiment2id.get(value, IGNORE_INDEX) if value.strip() else IGNORE_INDEX
                            for value in sentiments]
        no_sentiment = sum(not value.strip() for value in sentiments)
        if no_sentiment:
            stats["empty_sentiment"] += no_sentiment
        unknown = sum(label == IGNORE_INDEX for label in sentiment_labels) - no_sentiment
        if unknown:
            stats["unknown_sentiment"] += unknown

    def tokenize_batch(batch_titles: list[str], indices: list[int]) -> dict[str, list[Any]]:
        encoded = tokenize_titles(tokenizer, batch_titles, max_title_length, return_offsets_mapping=True)
        tags, cut_off = [], []
        for title, offsets, index in zip(batch_titles, encoded["offset_mapping"], indices, strict=True):
            spans = spans_per_news[index]
            tags.append(bio_tags(offsets, spans) if ner_labels else [IGNORE_INDEX] * len(offsets))
            cut_off.append(_entities_cut_off(title or "", offsets, spans))
        columns = {
            "input_ids": encoded["input_ids"],
            "category_label": [category_labels[i] for i in indices],
            "ner_labels": tags,
            "_entities_cut_off": cut_off,
        }
        if sentiment_labels is not None:
            columns["sentiment_label"] = [sentiment_labels[i] for i in indices]
        return columns

    if len(news) == 0:  # `map` calls nothing on an empty table, so it would add no column
        features = Features({**news.features, "input_ids": List(Value("int64")), "category_label": Value("int64"),
                             "ner_labels": List(Value("int64"))}
                            | ({"sentiment_label": Value("int64")} if sentiment_labels is not None else {}))
        return Dataset.from_dict({name: [] for name in features}, features=features)

    fingerprint = _tokenization_fingerprint(
        news, titles, entity_annotations, categories, tokenizer, max_title_length, category2id
    )
    if sentiment_labels is not None:  # MIND's tables (no sentiment column) keep the fingerprint they always had
        key = f"{fingerprint}\x1d{sorted(sentiment2id.items())}\x1d" + "\x1e".join(sentiments)
        fingerprint = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[: len(fingerprint)]
    if not ner_labels:  # tables with tags keep the fingerprint they always had
        fingerprint = hashlib.sha256(f"{fingerprint}\x1dno-ner-labels".encode()).hexdigest()[: len(fingerprint)]
    cache_file_name = None
    if cache_dir is not None:
        os.makedirs(cache_dir, exist_ok=True)
        cache_file_name = os.path.join(cache_dir, f"news-tokens-{fingerprint}.arrow")
    tokenized = news.map(
        tokenize_batch,
        batched=True,
        with_indices=True,
        input_columns=["title"],
        cache_file_name=cache_file_name,
        # An explicit fingerprint: hashing the closure (it holds every span) would be slow, and ours is exact.
        new_fingerprint=fingerprint,
        desc="Tokenising news titles",
    )
    # The truncation flag travels through the (possibly cached) table, so a cached run counts it too.
    truncated = sum(tokenized["_entities_cut_off"])
    if truncated:
        stats["title_truncated_entities"] += truncated
    tokenized = tokenized.remove_columns("_entities_cut_off")
    if own_stats:
        stats.log(logger, "tokenize_news")
    return tokenized
