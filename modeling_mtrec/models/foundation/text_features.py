"""Frozen-LM text features, computed once per distinct text and cached in safetensors.

The paper freezes the language model: E_lm(Q) = W_lm . MEAN(LM(tokens of Q)) with only W_lm trained. The
mean-pooled vector of a text therefore never changes during training, so each distinct query or item text is
encoded once, here, and the model takes the vectors (`text_embeds`). The encoding itself is the package's frozen
title encoder (`modeling_mtrec.models.two_tower.features.encode_titles`: tokenise with truncation, attention-masked mean of
the last hidden states), the same pooling as `modeling_foundation.mean_pool` for the end-to-end option.

A cache file holds the vectors, the texts (as JSON in the safetensors metadata) and a fingerprint of the LM
(its config, weights, tokenizer files and `max_length`); it is reused for any text it holds and refused
(`StaleCacheError`) for another LM. `TextFeatureCache.open(lm, cache_dir)` keeps one file per fingerprint,
`text-features-{fingerprint}.safetensors`, so switching LMs never mixes vectors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from modeling_mtrec.models.two_tower.features import encode_titles
from modeling_mtrec.serving.cache import StaleCacheError

logger = logging.getLogger(__name__)

_FORMAT = "mtrec-foundation-text-features/1"
# config.json entries that do not change the vectors (bookkeeping written by whichever version saved the LM).
_CONFIG_KEYS_WITHOUT_EFFECT = frozenset(
    {"_name_or_path", "architectures", "transformers_version", "dtype", "torch_dtype", "gradient_checkpointing",
     "use_cache"}
)
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


def lm_fingerprint(name_or_path: str | os.PathLike[str], max_length: int = 32) -> str:
    """16 hex digits identifying what a text vector depends on: the LM's config, weights, tokenizer and max_length.

    For a local folder the files are hashed (a copy of the same checkpoint elsewhere gets the same fingerprint);
    for a Hub id the model is loaded (from the local Hub cache when offline) and its weights are hashed.
    """
    hasher = hashlib.sha256(f"{_FORMAT}|max_length={max_length}|pooling=mean".encode())
    path = Path(name_or_path)
    if path.is_dir():
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        config = {k: v for k, v in config.items() if k not in _CONFIG_KEYS_WITHOUT_EFFECT}
        hasher.update(json.dumps(config, sort_keys=True).encode())
        weights = [path / name for name in _WEIGHT_FILES if (path / name).is_file()]
        if not weights:
            raise FileNotFoundError(f"{path}: no weights file ({' or '.join(_WEIGHT_FILES)})")
        for file in weights[:1] + [path / name for name in _TOKENIZER_FILES if (path / name).is_file()]:
            hasher.update(file.name.encode())
            with open(file, "rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    hasher.update(block)
        return hasher.hexdigest()[:16]
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(str(name_or_path))
    tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
    hasher.update(json.dumps(model.config.to_diff_dict(), sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        hasher.update(name.encode())
        hasher.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    hasher.update(json.dumps(tokenizer.get_vocab(), sort_keys=True).encode())
    return hasher.hexdigest()[:16]


class TextFeatureCache:
    """Mean-pooled frozen-LM vectors of texts, keyed by text, for one LM (one fingerprint).

    Attributes:
        lm_name_or_path: the LM that encodes missing texts.
        fingerprint: `lm_fingerprint(lm_name_or_path, max_length)`.
        path: the file `save()` writes (None: in memory only).
        encoded: texts encoded by the LM since this object was created (the rest came from the file).
        encode_seconds: wall time spent encoding them.
    """

    def __init__(
        self, lm_name_or_path: str, fingerprint: str, max_length: int = 32, path: str | os.PathLike | None = None
    ) -> None:
        self.lm_name_or_path = str(lm_name_or_path)
        self.fingerprint = fingerprint
        self.max_length = max_length
        self.path = Path(path) if path is not None else None
        self.texts: list[str] = []
        self.index: dict[str, int] = {}
        self.vectors: torch.Tensor | None = None  # (N, H)
        self.encoded = 0
        self.encode_seconds = 0.0

    def __len__(self) -> int:
        return len(self.texts)

    def __contains__(self, text: object) -> bool:
        return text in self.index

    def __repr__(self) -> str:
        return f"TextFeatureCache({len(self)} texts, lm={self.lm_name_or_path!r}, fingerprint={self.fingerprint})"

    @classmethod
    def open(
        cls, lm_name_or_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None, max_length: int = 32
    ) -> TextFeatureCache:
        """The cache of this LM in `cache_dir` (`text-features-{fingerprint}.safetensors`), loaded if it exists."""
        fingerprint = lm_fingerprint(lm_name_or_path, max_length)
        path = None if cache_dir is None else Path(cache_dir) / f"text-features-{fingerprint}.safetensors"
        if path is not None and path.is_file():
            cache = cls.load(path, lm_name_or_path, max_length=max_length, fingerprint=fingerprint)
            logger.info("Loaded %d cached text vectors from %s", len(cache), path)
            return cache
        return cls(str(lm_name_or_path), fingerprint, max_length, path)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        lm_name_or_path: str | os.PathLike,
        *,
        max_length: int = 32,
        fingerprint: str | None = None,
    ) -> TextFeatureCache:
        """Load a cache file for `lm_name_or_path`; raises `StaleCacheError` if another LM (or max_length) wrote it."""
        expected = fingerprint or lm_fingerprint(lm_name_or_path, max_length)
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            if metadata.get("format") != _FORMAT:
                raise ValueError(f"{path} is not a text-feature cache (format {metadata.get('format')!r})")
            if metadata.get("fingerprint") != expected:
                raise StaleCacheError(
                    f"{path} holds vectors of LM {metadata.get('lm')!r} (fingerprint {metadata.get('fingerprint')}), "
                    f"not of {str(lm_name_or_path)!r} with max_length={max_length} (fingerprint {expected}); "
                    "delete it or point the cache elsewhere"
                )
            vectors = f.get_tensor("vectors")
        cache = cls(str(lm_name_or_path), expected, max_length, path)
        cache.texts = json.loads(metadata["texts"])
        cache.index = {text: i for i, text in enumerate(cache.texts)}
        cache.vectors = vectors
        if len(cache.texts) != vectors.shape[0]:
            raise ValueError(f"{path}: {len(cache.texts)} texts but {vectors.shape[0]} vectors")
        return cache

    def save(self, path: str | os.PathLike | None = None) -> Path:
        path = Path(path) if path is not None else self.path
        if path is None:
            raise ValueError("no path: pass one, or build the cache with TextFeatureCache.open(lm, cache_dir)")
        path.parent.mkdir(parents=True, exist_ok=True)
        vectors = self.vectors if self.vectors is not None else torch.zeros(0, 0)
        metadata = {"format": _FORMAT, "fingerprint": self.fingerprint, "lm": self.lm_name_or_path,
                    "max_length": str(self.max_length), "texts": json.dumps(self.texts)}
        tmp = path.with_suffix(".tmp")
        save_file({"vectors": vectors.contiguous()}, str(tmp), metadata=metadata)
        os.replace(tmp, path)  # a reader never sees a half-written file
        return path

    def encode(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """Vectors of `texts` in order, (N, H) float32; only texts not in the cache go through the LM."""
        missing = list(dict.fromkeys(t for t in texts if t not in self.index))
        if missing:
            start = time.perf_counter()
            new = encode_titles(missing, self.lm_name_or_path, batch_size=batch_size, max_length=self.max_length)
            self.encode_seconds += time.perf_counter() - start
            self.encoded += len(missing)
            for text in missing:
                self.index[text] = len(self.texts)
                self.texts.append(text)
            self.vectors = new if self.vectors is None or self.vectors.numel() == 0 else torch.cat([self.vectors, new])
        if not texts:
            width = 0 if self.vectors is None else self.vectors.shape[1]
            return torch.zeros(0, width)
        return self.vectors[torch.as_tensor([self.index[t] for t in texts], dtype=torch.long)]


__all__ = ["StaleCacheError", "TextFeatureCache", "lm_fingerprint"]
