"""BIO tags, length buckets and the tokenisation cache on titles in Danish, Japanese, Thai and Arabic, with a
multilingual-BERT-shaped WordPiece tokenizer built offline in the test (cased, no accent stripping, CJK ideographs
split apart, as `bert-base-multilingual-cased`): words missing from its small vocabulary fall back to one piece per
character, so word pieces, characters and entity boundaries do not line up as they do in English."""

from __future__ import annotations

import json

import pytest
import torch
from datasets import Dataset
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import BertConfig, PreTrainedTokenizerFast

from modeling_mtrec import MTRecModel
from modeling_mtrec.data.stats import LoadStats
from modeling_mtrec.models.mtrec.processing_mtrec import bio_tags, title_entity_spans, tokenize_news
from tests.testing_utils import tiny_config

O, B, I, X = 0, 1, 2, -100  # noqa: E741  (the BIO tags by their letters; X: [CLS] / [SEP], no tag)

TITLES = {
    "da": "Løkke besøger Aalborg i dag",
    "ja": "トヨタが東京で新車を発表",
    "th": "กรุงเทพฯ ฝนตกหนัก",  # Bangkok: heavy rain (no spaces inside Thai words; combining vowel marks)
    "ar": "أمطار غزيرة في الرياض اليوم",  # heavy rain in Riyadh today (right to left; offsets are logical order)
}
WORDS = ["i", "dag", "besøger", "トヨ", "発表", "ฝน", "في", "اليوم"]  # the rest is split into characters


def entities(title: str, *mentions: str) -> str:
    """MIND's title_entities JSON for `mentions` (each located at its first occurrence, in code points)."""
    return json.dumps([{"Label": m, "Type": "", "WikidataId": "", "Confidence": 1.0,
                        "OccurrenceOffsets": [title.index(m)], "SurfaceForms": [m]} for m in mentions],
                      ensure_ascii=False)  # fmt: skip


ENTITIES = {
    "da": entities(TITLES["da"], "Løkke", "Aalborg"),
    "ja": entities(TITLES["ja"], "トヨタ", "東京"),
    "th": entities(TITLES["th"], "กรุงเทพฯ"),
    "ar": entities(TITLES["ar"], "الرياض"),
}


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = sorted({c for title in TITLES.values() for c in title if not c.isspace()} | set("🚗"))
    vocab = specials + WORDS + chars + ["##" + c for c in chars]
    backend = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]",
    )


# Worked out by hand from the pieces (shown under each line).
EXPECTED = {
    # [CLS] L ##ø ##k ##k ##e besøger A ##a ##l ##b ##o ##r ##g i dag [SEP]
    "da": [X, B, I, I, I, I, O, B, I, I, I, I, I, I, O, O, X],
    # [CLS] トヨ ##タ ##が 東 京 で 新 車 を 発 表 [SEP]: the particle が is a piece of the word トヨタが, tagged O
    "ja": [X, B, I, O, B, I, O, O, O, O, O, O, X],
    # [CLS] ก ##ร ##ุ ##ง ##เ ##ท ##พ ##ฯ ฝน ##ต ##ก ##ห ##น ##ั ##ก [SEP]: combining marks are pieces of their own
    "th": [X, B, I, I, I, I, I, I, I, O, O, O, O, O, O, O, X],
    # [CLS] أ ##م ##ط ##ا ##ر غ ##ز ##ي ##ر ##ة في ا ##ل ##ر ##ي ##ا ##ض اليوم [SEP]
    "ar": [X, O, O, O, O, O, O, O, O, O, O, O, B, I, I, I, I, I, O, X],
}


@pytest.mark.parametrize("lang", sorted(TITLES))
def test_bio_tags_by_hand(tokenizer, lang):
    title = TITLES[lang]
    spans = title_entity_spans(title, ENTITIES[lang])
    assert [title[s:e] for s, e in spans] == [json.loads(ENTITIES[lang])[i]["SurfaceForms"][0] for i in range(len(spans))]
    offsets = tokenizer(title, return_offsets_mapping=True)["offset_mapping"]
    assert bio_tags(offsets, spans) == EXPECTED[lang]


def test_entity_ending_inside_a_piece(tokenizer):
    """An entity that ends inside a word piece (ト of the piece トヨ) tags the whole piece B: BIO works on pieces."""
    title = TITLES["ja"]
    offsets = tokenizer(title, return_offsets_mapping=True)["offset_mapping"]
    assert bio_tags(offsets, title_entity_spans(title, entities(title, "ト")))[:4] == [X, B, O, O]


def test_utf16_offsets_before_a_japanese_entity(tokenizer):
    """A title with a character outside the BMP: an offset given in UTF-16 code units is re-read (MIND's rule)."""
    title = "🚗トヨタが発表"
    annotation = json.dumps([{"OccurrenceOffsets": [2], "SurfaceForms": ["トヨタ"]}], ensure_ascii=False)
    spans = title_entity_spans(title, annotation)
    assert spans == [(1, 4)]
    offsets = tokenizer(title, return_offsets_mapping=True)["offset_mapping"]
    # [CLS] 🚗 ##ト ##ヨ ##タ ##が: 🚗 is no punctuation to BERT, so 🚗トヨタが is one word, in character pieces
    assert tokenizer.convert_ids_to_tokens(tokenizer(title)["input_ids"])[:6] == ["[CLS]", "🚗", "##ト", "##ヨ", "##タ", "##が"]
    assert bio_tags(offsets, spans)[:6] == [X, O, B, I, I, O]


def news_table() -> Dataset:
    langs = sorted(TITLES)
    return Dataset.from_dict({
        "news_id": [f"N{i}" for i in range(len(langs))], "category": langs,
        "title": [TITLES[lang] for lang in langs], "title_entities": [ENTITIES[lang] for lang in langs],
    })  # fmt: skip


def test_tokenize_news_truncation_and_cache(tokenizer, tmp_path):
    langs = sorted(TITLES)
    stats = LoadStats()
    table = tokenize_news(news_table(), tokenizer, 32, stats=stats, cache_dir=str(tmp_path))
    assert table["ner_labels"][:] == [EXPECTED[lang] for lang in langs]
    assert table["category_label"][:] == [0, 1, 2, 3]
    # A second run reads the cached table: the same labels, and the counts are made again.
    cached_stats = LoadStats()
    cached = tokenize_news(news_table(), tokenizer, 32, stats=cached_stats, cache_dir=str(tmp_path))
    assert len(list(tmp_path.glob("news-tokens-*.arrow"))) == 1
    assert cached["ner_labels"][:] == table["ner_labels"][:] and cached_stats == stats
    # Cut after 6 tokens ([SEP] included): the pieces that remain keep their tags.
    stats = LoadStats()
    short = tokenize_news(news_table(), tokenizer, 6, stats=stats)
    assert short["ner_labels"][langs.index("th")] == [X, B, I, I, I, X]
    assert short["ner_labels"][langs.index("da")] == [X, B, I, I, I, X]
    assert short["ner_labels"][langs.index("ja")] == [X, B, I, O, B, X]  # 東 kept (B), 京 cut
    # Counted per news that loses (part of) an entity: every one here (ar's الرياض lies wholly past the cut).
    assert stats["title_truncated_entities"] == 4


def test_length_buckets_give_the_same_vectors(tokenizer):
    config = tiny_config(encoder_config=BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
    ))  # fmt: skip
    torch.manual_seed(0)
    model = MTRecModel(config).eval()
    batch = tokenizer(list(TITLES.values()), padding=True, return_tensors="pt")  # lengths 17, 13, 17, 20
    with torch.no_grad():
        one = model.encode_items(batch["input_ids"], batch["attention_mask"])
        model.config.length_buckets = 3
        buckets = model.encode_items(batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(buckets, one, rtol=1e-5, atol=1e-5)
