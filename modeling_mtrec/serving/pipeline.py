"""The `news-recommendation` pipeline: rank a user's candidate news from the titles they clicked.

    >>> from transformers import pipeline
    >>> recommend = pipeline("news-recommendation", model="outputs/mtrec", trust_remote_code=True)  # doctest: +SKIP
    >>> recommend({"history": ["Stocks rally on rate hopes"], "candidates": ["Cup final tonight", "Shares climb"]})
    ... # doctest: +SKIP
    {'ranking': [{'candidate': 'Shares climb', 'position': 1, 'score': 3.2}, ...],
     'history': [{'item': 'Stocks rally on rate hopes', 'weight': 1.0}]}

The scores are MTRec's s_j = r_j . r_u (Bi et al., Findings of ACL 2022, Sec. 3.1); each history item's `weight` is
its a_i in the user encoder's additive attention, r_u = sum_i a_i r_i: which past clicks drove the ranking. A list
of inputs gives a list of outputs. With ``news_ids=True`` the entries are news ids looked up in the folder's
``news_vectors.safetensors`` (`MTRecRecommender`'s cache file, written by ``train_mtrec.py --news_cache``).

It computes what `MTRecRecommender.recommend` computes, on the same tensors: titles tokenised as in training
(``[CLS] ... [SEP]``, truncated to `max_title_length`), encoded sorted by length in batches of `title_batch_size`, the most
recent `max_history_length` clicks, ties ranked in input order.

A multi-field MTRec (`MTRecConfig.use_multi_field`) encodes a news from its title, category and title entities: give
each entry as ``{"title": ..., "category": ..., "title_entities": ...}`` (MIND's news.tsv columns; ``""`` and ``"[]"``
for none), or news ids with ``news_ids=True`` (the folder's vectors hold the fields already). A plain title is refused
for such a model, with that advice. A single-field MTRec takes either form and reads the title alone.

This file stands alone (torch and transformers only): saving the pipeline (`save_pretrained`, or
`save_pipeline_code` on a saved model folder) copies it into the folder and names it in the config's
`custom_pipelines`, so the folder runs it where the `modeling_mtrec` package is not installed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import zlib
from collections.abc import Sequence
from typing import Any

import torch
from transformers import AutoModel, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

TASK = "news-recommendation"
NEWS_VECTORS_FILE = "news_vectors.safetensors"  # as MTRecRecommender.from_pretrained reads it
NEWS_KEYS = ("title", "category", "title_entities")  # an entry given as a dict: MIND's news.tsv columns
IGNORE_INDEX = -100  # Copied from modeling_mtrec.data.padding.IGNORE_INDEX

logger = logging.getLogger(__name__)


class NewsRecommendationPipeline(Pipeline):
    """Ranks candidate news for a user of an `MTRecModel` (see the module docstring).

    Call arguments:
        inputs (`dict` or `list[dict]`): ``{"history": [...], "candidates": [...]}``, the history oldest first; each
            entry a title, a news dict ``{"title", "category", "title_entities"}`` (what a multi-field MTRec needs),
            or a news id with `news_ids`. ``candidate`` and ``item`` in the output are the entries as given.
        top_k (`int`, *optional*): keep only the best `top_k` candidates in ``ranking``.
        news_ids (`bool`, *optional*, defaults to `False`): the entries are news ids of the folder's news vectors;
            an unknown id raises `KeyError` naming it.
        title_batch_size (`int`, *optional*, defaults to 256): titles encoded per pass of the news encoder (the
            recommender's `batch_size`).

    Returns (per input): ``{"ranking": [{"candidate", "position", "score"}, ...] best first (``position``: 0-based
    index in the input's candidates), "history": [{"item", "weight"}, ...] in input order}``. A click older than the
    most recent `max_history_length` has weight 0; an empty history gives every candidate score 0 (no evidence).
    """

    _load_tokenizer = True
    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False

    def __init__(self, *args: Any, news_vectors: tuple[list[str], torch.Tensor] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.model.eval()
        self._news_vectors = news_vectors  # (ids, (N, D)), read from the model's folder on first use

    def _sanitize_parameters(self, top_k=None, news_ids=None, title_batch_size=None, **kwargs):
        preprocess, postprocess = {}, {}
        if news_ids is not None:
            preprocess["news_ids"] = bool(news_ids)
        if title_batch_size is not None:
            if int(title_batch_size) < 1:
                raise ValueError(f"title_batch_size must be >= 1, got {title_batch_size}")
            preprocess["title_batch_size"] = int(title_batch_size)
        if top_k is not None:
            if int(top_k) < 1:
                raise ValueError(f"top_k must be >= 1, got {top_k}")
            postprocess["top_k"] = int(top_k)
        return preprocess, {}, postprocess

    # ---------------------------------------------------------------------------------------------- steps

    def preprocess(self, inputs: dict, news_ids: bool = False, title_batch_size: int = 256) -> dict[str, Any]:
        history, candidates = _check_input(inputs, news_ids)
        config = self.model.config
        multi_field = bool(getattr(config, "use_multi_field", False))
        # Each entry as what its vector depends on: a news id, a title, or (title, category label, entity ids).
        keys = {"history": history, "candidates": candidates}
        if not news_ids:
            keys = {name: [_news_key(entry, name, i, config, multi_field) for i, entry in enumerate(entries)]
                    for name, entries in keys.items()}
            if multi_field:  # as training: the model's vector for no category; said, not dropped silently
                known = config.category2id
                unknown = [entry["category"] for entry in (*history, *candidates)
                           if isinstance(entry, dict) and entry["category"].strip() and entry["category"] not in known]
                if unknown:
                    logger.warning("%d news have a category the model was not trained on (first: %r): they get its "
                                   "vector for no category, as in training", len(unknown), unknown[0])
        # Every distinct news is encoded (or looked up) once, then addressed by row, as MTRecRecommender does.
        rows: dict[Any, int] = {}
        for key in (*keys["history"], *keys["candidates"]):
            rows.setdefault(key, len(rows))
        entries = list(rows)
        max_history = config.max_history_length
        recent = keys["history"][max(0, len(history) - max_history) :]  # the most recent clicks, as in training
        model_inputs = {
            "history": history,
            "candidates": candidates,
            "history_rows": [rows[key] for key in recent],
            "candidate_rows": [rows[key] for key in keys["candidates"]],
            "num_dropped": len(history) - len(recent),
        }
        if news_ids:
            known_ids, vectors = self.news_vectors()
            index = {news_id: row for row, news_id in enumerate(known_ids)}
            unknown = next((entry for entry in entries if entry not in index), None)
            if unknown is not None:
                raise KeyError(f"news id {unknown!r} is not in the news vectors ({len(known_ids)} news)")
            model_inputs["vectors"] = vectors[torch.as_tensor([index[entry] for entry in entries], dtype=torch.long)]
            return model_inputs
        titles = [entry[0] for entry in entries] if multi_field else entries
        token_lists = self.tokenizer(titles, truncation=True, max_length=config.max_title_length)["input_ids"]
        pad = getattr(config.encoder_config, "pad_token_id", None)
        batches = _title_batches(token_lists, 0 if pad is None else int(pad), title_batch_size)
        if multi_field:  # each batch's category (b,) and entity ids (b, E), as processing_mtrec.multi_field_batch
            for batch_rows, batch in batches:
                width = max(1, *(len(entries[row][2]) for row in batch_rows))
                batch["category_ids"] = torch.tensor([entries[row][1] for row in batch_rows], dtype=torch.long)
                batch["entity_ids"] = torch.tensor(
                    [[*entries[row][2], *[0] * (width - len(entries[row][2]))] for row in batch_rows], dtype=torch.long
                )  # (b, E), 0-padded
        model_inputs["title_batches"] = batches
        return model_inputs

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, Any]:
        model, device = self.model, self.device
        vectors = model_inputs.pop("vectors", None)
        if vectors is None:  # the news table of this input: (R, D) float32 on CPU, as the recommender keeps it
            batches = model_inputs.pop("title_batches")
            vectors = torch.zeros(sum(len(batch[0]) for batch in batches), model.vector_size)  # (R, D)
            for rows, inputs in batches:
                encoded = model.encode_items(**{name: value.to(device) for name, value in inputs.items()})  # (b, D)
                vectors[torch.as_tensor(rows, dtype=torch.long)] = encoded.float().cpu()
        history_rows, candidate_rows = model_inputs["history_rows"], model_inputs["candidate_rows"]
        table = vectors.to(device)  # (R, D)
        width = max(len(history_rows), 1)  # an empty history still needs a (masked) column to gather
        history_index = torch.tensor([history_rows + [0] * (width - len(history_rows))], device=device)  # (1, H)
        history_mask = torch.arange(width, device=device)[None] < len(history_rows)  # (1, H)
        history = table[history_index].to(model.dtype)  # (1, H, D)
        user = model.encode_users(history, history_mask)  # (1, D)
        candidates = table[torch.tensor([candidate_rows], device=device)].to(model.dtype)  # (1, C, D)
        model_inputs["scores"] = model.score(user, candidates)[0].float().cpu()  # (C,)
        weights = getattr(model, "user_attention_weights", None)  # absent from folders saved before it existed
        model_inputs["weights"] = (
            None if weights is None else weights(history, history_mask)[0, : len(history_rows)].float().cpu()
        )
        return model_inputs

    def postprocess(self, model_outputs: dict[str, Any], top_k: int | None = None) -> dict[str, list[dict]]:
        scores = model_outputs["scores"].numpy()
        order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))  # stable: ties in input order
        candidates = model_outputs["candidates"]
        ranking = [
            {"candidate": candidates[i], "position": i, "score": float(scores[i])} for i in order[:top_k]
        ]
        weights = model_outputs["weights"]
        dropped = model_outputs["num_dropped"]
        history = [
            {"item": item, "weight": None if weights is None else (0.0 if i < dropped else float(weights[i - dropped]))}
            for i, item in enumerate(model_outputs["history"])
        ]
        return {"ranking": ranking, "history": history}

    # ---------------------------------------------------------------------------------------------- news ids

    def news_vectors(self) -> tuple[list[str], torch.Tensor]:
        """(news ids, vectors (N, D)) of the model folder's ``news_vectors.safetensors``, read once.

        NOTE: the vectors are used as written with the folder's weights; the package's `NewsVectorCache.load(path,
        model)` also checks they were encoded by this model's news encoder.
        """
        if self._news_vectors is None:
            folder = getattr(self.model, "name_or_path", "") or ""
            path = os.path.join(folder, NEWS_VECTORS_FILE)
            if not os.path.isfile(path):
                raise ValueError(
                    f"news ids need the model folder's {NEWS_VECTORS_FILE} (no such file in {folder!r}); pass titles "
                    "instead, or write the file with train_mtrec.py --news_cache"
                )
            from safetensors import safe_open

            with safe_open(path, framework="pt") as handle:
                metadata = handle.metadata() or {}
                vectors = handle.get_tensor("vectors").float()
            # The package's vector format (modeling_mtrec.vectors.save_vectors), read here without the package.
            if metadata.get("kind") != "news" or "keys" not in metadata:
                raise ValueError(f"{path}: not a news vector file (metadata kind {metadata.get('kind')!r})")
            self._news_vectors = (json.loads(metadata["keys"]), vectors)
        return self._news_vectors


def _check_input(inputs: Any, news_ids: bool = False) -> tuple[list, list]:
    """(history, candidates) of one input; `ValueError` naming what is wrong. Entries are strings (titles, or news ids
    with `news_ids`) or, without `news_ids`, news dicts (`NEWS_KEYS`), checked by `_news_fields`."""
    if not isinstance(inputs, dict) or not {"history", "candidates"} <= set(inputs):
        raise ValueError(f'an input is a dict {{"history": [...], "candidates": [...]}}, got {type(inputs).__name__}')
    out = []
    for key in ("history", "candidates"):
        value = inputs[key]
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ValueError(f"{key!r} must be a list of strings, got {type(value).__name__}")
        kinds = (str,) if news_ids else (str, dict)
        bad = next((entry for entry in value if not isinstance(entry, kinds)), None)
        if bad is not None:
            what = "strings (news ids are strings)" if news_ids else "strings (titles) or news dicts"
            raise ValueError(f"{key!r} must hold {what}, got {type(bad).__name__} {bad!r}")
        out.append(list(value))
    if not out[1]:
        raise ValueError("'candidates' is empty: give at least one news to rank")
    return out[0], out[1]


def _news_key(entry: str | dict, key: str, position: int, config: Any, multi_field: bool) -> str | tuple:
    """What the vector of one entry (a title or a news dict) depends on: its title for a single-field MTRec, which
    reads the title alone; for a multi-field one (title, category label, entity ids), the inputs
    `processing_mtrec.raw_news_fields` makes (an empty or unknown category -100). `ValueError` naming the entry when
    a multi-field MTRec lacks a field, a field is broken or a news dict holds an unknown key (a misspelt field).

    NOTE: written again here rather than imported (this file runs as Hub remote code without the package);
    `tests/serving/test_multi_field.py` checks that the scores equal the recommender's bit for bit.
    """
    where = f"{key!r} entry {position}"
    needs = (
        "a multi-field MTRec (config.use_multi_field) encodes each news from its title, category and title entities: "
        'give each entry as {"title": ..., "category": ..., "title_entities": ...} (MIND\'s news.tsv columns; "" and '
        '"[]" for none), or news ids with news_ids=True'
    )
    if isinstance(entry, str):
        if multi_field:
            raise ValueError(f"{where} is a plain title: {needs}")
        return entry
    extra = sorted(set(entry) - set(NEWS_KEYS))
    if extra:
        raise ValueError(f"{where} has unknown key(s) {extra}; a news dict holds {list(NEWS_KEYS)}")
    title = entry.get("title")
    if not isinstance(title, str):
        raise ValueError(f'{where} has no string "title": {entry!r}')
    if not multi_field:
        return title
    category, title_entities = entry.get("category"), entry.get("title_entities")
    if category is None or title_entities is None:
        raise ValueError(f'{where} lacks "category" or "title_entities": {needs}')
    if not isinstance(category, str):
        raise ValueError(f"{where}: category must be a string, got {type(category).__name__} {category!r}")
    label = config.category2id.get(category, IGNORE_INDEX) if category.strip() else IGNORE_INDEX
    try:
        entity_ids = tuple(_entity_field_ids(title_entities, config.num_entity_buckets, strict=True))
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    return title, label, entity_ids


def _entity_field_ids(title_entities: str | list | None, num_buckets: int, strict: bool = False) -> list[int]:
    """`processing_mtrec.entity_field_ids`, written again for this standalone file (see `_news_fields`) and taking the
    parsed list too: each distinct entity's WikidataId (else its Label) hashed by CRC-32 into 1..`num_buckets`, in
    order of appearance. With `strict`, an annotation that is not a JSON list of objects is a `ValueError` (a
    caller's input); otherwise it gives no entity, as the package's does for a file's broken annotation."""
    entities = title_entities
    if entities is None or isinstance(entities, str):
        try:
            entities = json.loads(entities) if entities and entities.strip() else []
        except (json.JSONDecodeError, RecursionError) as error:
            if strict:
                raise ValueError(f"title_entities is not valid JSON: {error}") from None
            return []
    if not isinstance(entities, list):
        if strict:
            raise ValueError(f"title_entities is not a JSON list: {title_entities!r}")
        return []
    if strict:
        bad = next((i for i, entity in enumerate(entities) if not isinstance(entity, dict)), None)
        if bad is not None:
            raise ValueError(f"title_entities: entity {bad} is not a JSON object: {entities[bad]!r}")
    return entity_bucket_ids(entities, num_buckets)


# Copied from modeling_mtrec.models.mtrec.processing_mtrec.entity_bucket_ids (this file stands alone as remote code)
def entity_bucket_ids(entities: list, num_buckets: int) -> list[int]:
    """`entity_field_ids` of parsed entities (a list of MIND entity objects; anything else in it is skipped)."""
    keys = []
    for entity in entities:
        if isinstance(entity, dict):
            key = entity.get("WikidataId") or entity.get("Label")
            if isinstance(key, str) and key and key not in keys:
                keys.append(key)
    return [zlib.crc32(key.encode("utf-8", "surrogatepass")) % num_buckets + 1 for key in keys]


def _title_batches(
    token_lists: Sequence[Sequence[int]], pad_token_id: int, batch_size: int
) -> list[tuple[list[int], dict[str, torch.Tensor]]]:
    """(rows, {"input_ids" (b, L), "attention_mask" (b, L)}) per batch of titles sorted by length, each padded to its
    longest (the recommender's batching: `processing_mtrec.title_batches`).

    NOTE: written again here rather than imported, because this file runs as Hub remote code without the package;
    `tests/serving/test_pipeline.py` checks that the pipeline's scores equal the recommender's bit for bit.
    """
    order = sorted(range(len(token_lists)), key=lambda i: len(token_lists[i]))
    batches = []
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = max(len(token_lists[i]) for i in rows)
        ids = [list(token_lists[i]) + [pad_token_id] * (width - len(token_lists[i])) for i in rows]
        mask = [[1] * len(token_lists[i]) + [0] * (width - len(token_lists[i])) for i in rows]
        batches.append((rows, {"input_ids": torch.tensor(ids, dtype=torch.long),
                               "attention_mask": torch.tensor(mask, dtype=torch.long)}))
    return batches


def save_pipeline_code(folder: str | os.PathLike[str]) -> None:
    """Makes a saved MTRec folder a `news-recommendation` pipeline: copies this file into it and names it in the
    config's ``custom_pipelines``, as `Pipeline.save_pretrained` does, without writing the weights again."""
    config_path = os.path.join(folder, "config.json")
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    module = os.path.splitext(os.path.basename(__file__))[0]
    config["custom_pipelines"] = {
        TASK: {"impl": f"{module}.{NewsRecommendationPipeline.__name__}", "pt": ["AutoModel"], "type": "text"}
    }
    with open(config_path, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    shutil.copyfile(__file__, os.path.join(folder, os.path.basename(__file__)))


if TASK not in PIPELINE_REGISTRY.supported_tasks:
    PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=NewsRecommendationPipeline, pt_model=AutoModel, type="text")
