"""Frozen lower layers (`MTRecConfig.freeze_encoder_layers`) and their cached states (`training.frozen_states`)."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig

from modeling_mtrec import MTRecConfig, MTRecModel, MTRecTrainer, MTRecTrainingArguments
from modeling_mtrec.data import generate_synthetic_mind, synthetic_tokenizer
from modeling_mtrec.models.mtrec.collator import MTRecCollator
from modeling_mtrec.models.mtrec.corpus import load_mind
from modeling_mtrec.vectors import StaleCacheError
from modeling_mtrec.training.frozen_states import FrozenStateCache, FrozenStateCollator, frozen_fingerprint
from tests.testing_utils import random_batch, tiny_config
from tests.models.mtrec import exactness_run
from tests.models.mtrec.test_exactness import _reference, _trainer, assert_same_params, final_params

K = 1  # of the tiny encoders' 2 layers


def frozen_model(k: int = K, dropout: float = 0.0, seed: int = 0, **config) -> MTRecModel:
    torch.manual_seed(seed)
    encoder = BertConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
    )
    return MTRecModel(tiny_config(encoder_config=encoder, head_dropout=dropout, freeze_encoder_layers=k, **config))


def is_frozen(name: str, k: int = K) -> bool:
    return ".embeddings." in name or any(f".encoder.layer.{i}." in name for i in range(k))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A small synthetic MIND corpus, tokenised (vocabulary < 99 is not guaranteed: the tests size BERT to it)."""
    folder = tmp_path_factory.mktemp("mind")
    dirs = generate_synthetic_mind(str(folder), seed=0, num_users=12, num_dev_users=3)
    tokenizer = synthetic_tokenizer()
    data = load_mind(tokenizer, train_dir=dirs["train"], max_title_length=16, max_history_length=10)
    data.tokenizer = tokenizer
    return data


def corpus_model(corpus, k: int = K, dropout: float = 0.0, seed: int = 0, **config) -> MTRecModel:
    torch.manual_seed(seed)
    encoder = BertConfig(
        vocab_size=len(corpus.tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37, max_position_embeddings=32, hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    return MTRecModel(MTRecConfig(
        encoder_config=encoder, id2category={i: c for c, i in corpus.category2id.items()}, max_title_length=16,
        max_history_length=10, user_attention_dim=16, head_dropout=dropout, freeze_encoder_layers=k, **config,
    ))


def train_on_corpus(corpus, model, tmp_path, *, cached: bool, steps: int = 3, **args) -> dict[str, torch.Tensor]:
    collator = MTRecCollator(corpus.news, num_negatives=2, pad_token_id=corpus.tokenizer.pad_token_id, seed=0)
    if cached:
        collator = FrozenStateCollator(collator, FrozenStateCache.from_model(model, corpus.news, batch_size=7))
    training_args = MTRecTrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=steps, learning_rate=0.1, optim="sgd",
        report_to=[], use_cpu=True, seed=0, save_strategy="no", disable_tqdm=True, dataloader_num_workers=0, **args,
    )
    trainer = MTRecTrainer(model=model, args=training_args, train_dataset=corpus.train, data_collator=collator)
    trainer.train()
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters()}


# ---------------------------------------------------------------------------------------------- the config


@pytest.mark.parametrize("value", [-1, 3, 1.5])
def test_config_refuses_bad_freeze_values(value):
    with pytest.raises(ValueError, match="freeze_encoder_layers"):
        tiny_config(freeze_encoder_layers=value)


def test_frozen_parameters_are_exactly_embeddings_and_first_k_layers():
    model = frozen_model()
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in model.named_parameters() if is_frozen(n)} and frozen
    assert not model.news_encoder.embeddings.training  # no dropout there, from the start
    model.train()
    assert not model.news_encoder.encoder.layer[0].training and model.news_encoder.encoder.layer[1].training


def test_hidden_states_need_a_frozen_model():
    model = frozen_model(k=0)
    batch = random_batch()
    with pytest.raises(ValueError, match="freeze_encoder_layers"):
        model(**batch, news_hidden_states=torch.zeros(*batch["news_input_ids"].shape, 32))


# ------------------------------------------------------------------------------------- training with a freeze


def test_optimizer_steps_leave_exactly_the_frozen_parameters_unchanged(tmp_path, monkeypatch):
    monkeypatch.setattr(exactness_run, "build_model", lambda: frozen_model())
    exactness_run.train(str(tmp_path), "mtrec", max_steps=2)
    initial = dict(frozen_model().named_parameters())
    for name, value in final_params(tmp_path).items():
        assert torch.equal(value, initial[name]) == is_frozen(name), name


def test_surgery_exact_under_frozen_layers(tmp_path):
    """The trainer's step equals the surgery computed by hand; the shared parameters are the unfrozen encoder's."""
    for seed in range(60):
        batch = random_batch(seed=seed)
        params, expected, dot = _reference(frozen_model().train(), batch)
        if dot < 0:
            break
    else:
        raise AssertionError("no conflicting batch found")
    model = frozen_model().train()
    params = [p for p in model.parameters() if p.requires_grad]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert not any(is_frozen(n) for n in names)
    _trainer(tmp_path, model).training_step(model, dict(batch))
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.grad, e, rtol=1e-5, atol=1e-7)
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)
    out = model(**batch)
    g_main = torch.autograd.grad(out.main_loss, params, retain_graph=True, allow_unused=True)
    g_aux = torch.autograd.grad(out.category_loss + out.ner_loss, params, allow_unused=True)
    shared = {n for n, m, a in zip(names, g_main, g_aux) if m is not None and a is not None}
    assert shared == {n for n in names if n.startswith("news_encoder.")}  # the unfrozen encoder layers


def test_surgery_accumulation_equals_one_big_batch_under_frozen_layers(tmp_path, monkeypatch):
    monkeypatch.setattr(exactness_run, "build_model", lambda: frozen_model())
    exactness_run.train(str(tmp_path / "concat"), "mtrec", concatenate=2)
    exactness_run.train(str(tmp_path / "accumulated"), "mtrec", gradient_accumulation_steps=2)
    assert_same_params(final_params(tmp_path / "accumulated"), final_params(tmp_path / "concat"))


# -------------------------------------------------------------------------------------------- cached states


def test_cached_states_give_the_uncached_forward(corpus):
    model = corpus_model(corpus).eval()
    cache = FrozenStateCache.from_model(model, corpus.news, batch_size=5)
    assert cache.states.shape[:2] == (len(corpus.news), max(len(t) for t in corpus.news["input_ids"]))
    collator = MTRecCollator(corpus.news, num_negatives=2, pad_token_id=corpus.tokenizer.pad_token_id, seed=0)
    batch = FrozenStateCollator(collator, cache)([corpus.train[i] for i in range(6)])
    assert "news_rows" not in batch
    states = batch.pop("news_hidden_states")
    assert states.shape == (*batch["news_input_ids"].shape, 32)
    expected, got = model(**batch), model(**batch, news_hidden_states=states)
    for name in ("loss", "logits", "news_embeds"):
        torch.testing.assert_close(getattr(got, name), getattr(expected, name), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("speedups", [{}, {"length_buckets": 2, "history_cache_steps": 2}], ids=["plain", "composed"])
def test_training_from_cached_states_equals_training_through_the_frozen_layers(corpus, tmp_path, speedups):
    """Dropout off: the same steps, the same weights (the recipe's data path; SGD, as the exactness tests: Adam
    would blow float rounding on near-zero gradients up to full-size steps). `composed`: with length buckets and the
    history-vector cache as well."""
    buckets = speedups.get("length_buckets", 1)
    args = {k: v for k, v in speedups.items() if k != "length_buckets"}
    uncached = train_on_corpus(corpus, corpus_model(corpus, length_buckets=buckets), tmp_path / "a", cached=False, **args)
    cached = train_on_corpus(corpus, corpus_model(corpus, length_buckets=buckets), tmp_path / "b", cached=True, **args)
    assert_same_params(cached, uncached, atol=1e-5)
    initial = dict(corpus_model(corpus).named_parameters())
    assert all(torch.equal(cached[n], initial[n]) == is_frozen(n) for n in cached)


def test_cached_states_stay_valid_while_the_top_trains_and_stale_ones_are_refused(corpus, tmp_path):
    model = corpus_model(corpus)
    cache = FrozenStateCache.from_model(model, corpus.news)
    cache.save(tmp_path / "states.safetensors")
    fingerprint = frozen_fingerprint(model)
    with torch.no_grad():
        model.news_encoder.encoder.layer[1].output.dense.weight.add_(1.0)  # the top trains: still valid
    assert frozen_fingerprint(model) == fingerprint
    loaded = FrozenStateCache.load(tmp_path / "states.safetensors", model, corpus.news)
    assert torch.equal(loaded.states, cache.states) and torch.equal(loaded.lengths, cache.lengths)

    with torch.no_grad():
        model.news_encoder.encoder.layer[0].output.dense.weight.add_(1.0)  # a frozen layer changed: stale
    with pytest.raises(StaleCacheError):
        FrozenStateCache.load(tmp_path / "states.safetensors", model)
    with pytest.raises(StaleCacheError):  # same weights, other k
        FrozenStateCache.load(tmp_path / "states.safetensors", corpus_model(corpus, k=2))
    with pytest.raises(StaleCacheError, match="news table"):  # other titles
        FrozenStateCache.load(tmp_path / "states.safetensors", corpus_model(corpus), corpus.news.select(range(5)))
    rebuilt = FrozenStateCache.load_or_build(tmp_path / "states.safetensors", model, corpus.news)  # refused, redone
    assert rebuilt.fingerprint == frozen_fingerprint(model)
    assert FrozenStateCache.load(tmp_path / "states.safetensors", model).fingerprint == rebuilt.fingerprint
