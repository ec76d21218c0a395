"""The vocabulary of the synthetic MIND-format corpus, and a tiny WordPiece tokenizer that covers it.

Fixed lists (not drawn from a seed), so one tokenizer serves every generated corpus. The two large tables,
`CATEGORY_TOPICS` (category -> subcategory -> topic words; no topic word is shared between categories) and
`CATEGORY_ENTITIES` (category -> (invented entity name, MIND-style type: P person, O organisation, G place)), are
data and live in ``synthetic_vocab.json`` beside this file; their order matters, since the generator draws from
them by position.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import BertTokenizer, PreTrainedTokenizerFast

__all__ = [
    "CATEGORY_ENTITIES",
    "CATEGORY_TOPICS",
    "SYNTHETIC_VOCAB_SIZE",
    "synthetic_tokenizer",
    "synthetic_vocab",
]

_TABLES = json.loads((Path(__file__).parent / "synthetic_vocab.json").read_text(encoding="utf-8"))
# category -> subcategory -> topic words of that subcategory
CATEGORY_TOPICS: dict[str, dict[str, tuple[str, ...]]] = {
    category: {sub: tuple(words) for sub, words in subs.items()} for category, subs in _TABLES["category_topics"].items()
}
# category -> (entity name, MIND-style type: P person, O organisation, G place). All names are invented.
CATEGORY_ENTITIES: dict[str, tuple[tuple[str, str], ...]] = {
    category: tuple((name, kind) for name, kind in entities)
    for category, entities in _TABLES["category_entities"].items()
}

# Entity words common enough to be whole words of the vocabulary; every other entity word is "unusual" and only
# its 3-letter chunks are (``zorvak`` -> ``zor ##vak``), so those entities are split into word pieces.
COMMON_NAME_WORDS: frozenset[str] = frozenset(
    "united hawks rovers bank capital group labs clinic institute air port isles cruises velvet quarry "
    "orchestra records telescope lab valley casa motors speedway trucks".split()
)

# Words shared by every category: they carry no category signal, only noise.
FILLER_WORDS: tuple[str, ...] = (
    "new", "big", "top", "latest", "surprising", "quiet", "major", "early", "final", "weekly",
    "local", "global", "bold", "strange", "record", "rare", "honest", "simple",
)  # fmt: skip
# Filler words that make any reader likelier to click (a clickbait-like cue), when `appeal_boost` is set: a signal of
# the title's wording alone, the same for every user, that no category or click count shows for a fresh news.
APPEAL_WORDS: frozenset[str] = frozenset({"big", "surprising", "bold", "strange", "record", "rare"})
assert APPEAL_WORDS <= set(FILLER_WORDS)
VERBS: tuple[str, ...] = (
    "announces", "faces", "wins", "reveals", "plans", "joins", "defends", "launches",
    "praises", "backs", "rethinks", "tests",
)  # fmt: skip
FUNCTION_WORDS: tuple[str, ...] = ("and", "the", "how", "as", "in", "for", "vs", "after", "with", "of")
PUNCTUATION: tuple[str, ...] = (":", ",", ".", "'", "-", "?", "!")

# Title templates. {E}/{E2}: two different entities, {T}: topic word, {F}: filler, {V}: verb. Entities are the
# only capitalised words (besides the first letter), as in news headlines written in sentence case.
TEMPLATES_BY_ENTITY_COUNT: dict[int, tuple[str, ...]] = {
    0: (
        "{F} {T} and {T} {F} {T}",
        "the {F} {T} {T} {V} {T}",
        "{T} {T}: {F} {T} for the {T}",
    ),
    1: (
        "{E} {V} {F} {T} {T}",
        "{F} {T}: {E} {V} the {T}",
        "how {E} {V} {T} and {T}",
        "{T} {T} after {E} {V} {F} {T}",
        "{E} {V} {T} as {E} {T} {T}",  # the same entity twice: one annotation with two offsets
    ),
    2: (
        "{E} and {E2} {V} {T} {T}",
        "{E} {V} {E2} in {F} {T}",
        "{T} {T}: {E} vs {E2}",
        "{F} {T} {E} {E2} {V} {T}",  # two adjacent entities: B ... B
    ),
}
SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # [PAD] = 0


def _word_pieces(word: str, size: int = 3) -> list[str]:
    """Chunk an unusual word into WordPiece pieces (``"zorvak"`` -> ``["zor", "##vak"]``)."""
    chunks = [word[i : i + size] for i in range(0, len(word), size)]
    return [chunks[0]] + ["##" + chunk for chunk in chunks[1:]]


def _entity_words() -> list[str]:
    return [
        w.lower() for entities in CATEGORY_ENTITIES.values() for name, _ in entities for w in name.split()
    ]


def synthetic_vocab() -> list[str]:
    """The WordPiece vocabulary of `synthetic_tokenizer`, in id order ([PAD] = 0).

    Special tokens, punctuation, digits, every single letter (as a word start and as ``##`` continuation, so no
    lowercase word is ever [UNK]), every whole word the generator writes except the unusual entity words, and
    the 3-letter pieces of those.
    """
    words: list[str] = [w for topics in CATEGORY_TOPICS.values() for ws in topics.values() for w in ws]
    words += list(FILLER_WORDS) + list(VERBS) + list(FUNCTION_WORDS)
    pieces: list[str] = []
    for word in _entity_words():
        if word in COMMON_NAME_WORDS:
            words.append(word)
        else:
            pieces += _word_pieces(word)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = list(SPECIAL_TOKENS) + list(PUNCTUATION) + [str(d) for d in range(10)]
    vocab += letters + ["##" + letter for letter in letters] + sorted(set(words)) + sorted(set(pieces))
    return list(dict.fromkeys(vocab))  # de-duplicated, first occurrence wins


SYNTHETIC_VOCAB_SIZE: int = len(synthetic_vocab())


def synthetic_tokenizer(output_dir: str | None = None) -> PreTrainedTokenizerFast:
    """An uncased BERT WordPiece tokenizer over `synthetic_vocab` (``len(tokenizer) == SYNTHETIC_VOCAB_SIZE``).

    It is a fast tokenizer (offset mapping for the BIO tags); unusual entity words split into pieces, e.g.
    ``"Zorvak United"`` -> ``["zor", "##vak", "united"]``. With ``output_dir`` it is also saved there
    (`save_pretrained`), so that a training script can reload it with `AutoTokenizer.from_pretrained`.
    """
    vocab = {token: index for index, token in enumerate(synthetic_vocab())}
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=512)
    if output_dir is not None:
        tokenizer.save_pretrained(output_dir)
    return tokenizer
