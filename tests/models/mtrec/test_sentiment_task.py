"""MTRec's sentiment auxiliary task (EB-NeRD's `sentiment_label`): config, head, labels from `tokenize_news`, the
collator's `sentiment_labels`, and the gradient step: λ(g_category + g_ner + g_sentiment), projected by the surgery."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import BertConfig

import tests.models.mtrec.test_modeling_mtrec as common
from modeling_mtrec import MTRecConfig, MTRecModel, MTRecTrainer, MTRecTrainingArguments
from modeling_mtrec.data import synthetic_tokenizer
from modeling_mtrec.data.stats import LoadStats
from modeling_mtrec.models.mtrec.collator import MTRecCollator
from modeling_mtrec.models.mtrec.processing_mtrec import tokenize_news
from tests.testing_utils import VOCAB, random_batch, tiny_config

LAMBDA = 0.3
SENTIMENTS = {0: "Negative", 1: "Neutral", 2: "Positive"}


def sentiment_config(**overrides) -> MTRecConfig:
    no_dropout = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=37, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    kwargs = dict(encoder_config=no_dropout, head_dropout=0.0, use_sentiment_task=True, id2sentiment=SENTIMENTS)
    return tiny_config(**{**kwargs, **overrides})


def sentiment_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    batch = random_batch(seed=seed)
    labels = torch.randint(0, 3, (batch["news_input_ids"].shape[0],), generator=torch.Generator().manual_seed(seed))
    labels[1] = -100  # a news without a sentiment label
    return {**batch, "sentiment_labels": labels}


class TestMTRecModelWithSentiment(common.TestMTRecModel):
    """The common model tests (save/load, Auto round trip, remote code, gradients to every parameter) with the head."""

    loss_names = ("loss", "main_loss", "category_loss", "ner_loss", "sentiment_loss")

    def get_config(self):
        return tiny_config(use_sentiment_task=True, id2sentiment=SENTIMENTS)

    def get_inputs(self, config):
        return sentiment_batch()

    def test_folders_saved_by_earlier_versions_still_load(self):  # earlier versions had no sentiment head
        model = self.make_model()
        assert set(model.state_dict()) == set(self.legacy_state_dict_keys) | {"sentiment_head.weight",
                                                                              "sentiment_head.bias"}


def test_off_by_default_and_validated():
    model = MTRecModel(tiny_config())
    assert model.config.use_sentiment_task is False and model.sentiment_head is None
    assert model(**sentiment_batch()).sentiment_loss is None  # labels given, task off: ignored
    with pytest.raises(ValueError, match="use_sentiment_task.*two labels"):
        tiny_config(use_sentiment_task=True)
    with pytest.raises(ValueError, match="id2sentiment"):
        tiny_config(id2sentiment={1: "Positive"})
    config = MTRecConfig.from_dict(sentiment_config().to_dict())  # JSON keys back to ints
    assert config.id2sentiment == SENTIMENTS and config.sentiment2id == {"Negative": 0, "Neutral": 1, "Positive": 2}


def test_sentiment_loss_by_hand():
    torch.manual_seed(0)
    model = MTRecModel(sentiment_config()).eval()
    batch = sentiment_batch()
    out = model(**batch)
    cls = model.news_encoder(input_ids=batch["news_input_ids"], attention_mask=batch["news_attention_mask"])
    logits = model.sentiment_head(cls.last_hidden_state[:, 0])  # (N, 3)
    keep = batch["sentiment_labels"] != -100
    torch.testing.assert_close(out.sentiment_loss, F.cross_entropy(logits[keep], batch["sentiment_labels"][keep]))
    torch.testing.assert_close(out.loss, out.main_loss + out.category_loss + out.ner_loss + out.sentiment_loss)


def _task_gradients(model, batch, params):
    out = model(**batch)
    return {name: torch.autograd.grad(getattr(out, name), params, retain_graph=True, allow_unused=True)
            for name in ("main_loss", "category_loss", "ner_loss", "sentiment_loss")}


@pytest.mark.parametrize("seed", [1, 2])  # seed 1: no conflict (plain sum); seed 2: a conflict, projected
def test_sentiment_task_through_the_surgery_by_hand(tmp_path, seed):
    """The step's gradient: a = λ(g_category + g_ner + g_sentiment); where a · g_main < 0 over the parameters both
    reach, a is projected off g_main, a' = a - (a · m / |m|²) m; every parameter's update is m + a' (or its one
    task's gradient)."""
    torch.manual_seed(0)
    model = MTRecModel(sentiment_config()).train()
    batch = sentiment_batch(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = _task_gradients(model, batch, params)

    def add(*gs):
        present = [g for g in gs if g is not None]
        return None if not present else sum(present[1:], present[0])

    main = list(grads["main_loss"])
    aux = [None if g is None else LAMBDA * g
           for g in (add(c, n, s) for c, n, s in zip(grads["category_loss"], grads["ner_loss"], grads["sentiment_loss"]))]
    head = [i for i, p in enumerate(params) if any(p is q for q in model.sentiment_head.parameters())]
    assert head and all(main[i] is None and aux[i] is not None for i in head)  # the head learns from its loss only
    shared = [i for i in range(len(params)) if main[i] is not None and aux[i] is not None]
    m = torch.cat([main[i].flatten() for i in shared])
    a = torch.cat([aux[i].flatten() for i in shared])
    dot = torch.dot(a, m)
    assert (dot < 0) == (seed == 2)
    if dot < 0:
        a = a - dot / torch.dot(m, m) * m
    pieces = iter((m + a).split([params[i].numel() for i in shared]))
    expected = [next(pieces).view_as(p) if i in shared else add(main[i], aux[i]) for i, p in enumerate(params)]

    args = MTRecTrainingArguments(output_dir=str(tmp_path), aux_weight=LAMBDA, report_to=[], use_cpu=True,
                                  save_strategy="no")
    trainer = MTRecTrainer(model=model, args=args, data_collator=lambda f: f[0])
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop; training_step is called directly
    trainer.training_step(model, dict(batch))
    for param, want in zip(params, expected):
        if want is None:
            assert param.grad is None
        else:
            torch.testing.assert_close(param.grad, want, rtol=1e-4, atol=1e-6)


def test_tokenize_news_and_collator_carry_sentiment_labels():
    news = Dataset.from_dict({
        "news_id": ["N1", "N2", "N3", "N4"], "category": ["a", "b", "a", "b"],
        "title": ["the team wins", "rain stops play", "the cup", "team"], "title_entities": ["[]"] * 4,
        "sentiment": ["Positive", "", "Negative", "Mixed"],
    })  # fmt: skip
    tokenizer = synthetic_tokenizer()
    table = tokenize_news(news, tokenizer, 12, stats=LoadStats())
    assert table["sentiment_label"][:] == [2, -100, 1, 0]  # built from the values, sorted: Mixed, Negative, Positive
    stats = LoadStats()
    table = tokenize_news(news, tokenizer, 12, stats=stats, sentiment2id={v: k for k, v in SENTIMENTS.items()})
    assert table["sentiment_label"][:] == [2, -100, 0, -100]
    assert stats["empty_sentiment"] == 1 and stats["unknown_sentiment"] == 1
    # A table without a sentiment column (MIND) gets no sentiment labels, and its batches none.
    plain = tokenize_news(news.remove_columns("sentiment"), tokenizer, 12, stats=LoadStats())
    assert "sentiment_label" not in plain.column_names
    feature = {"history": [0], "candidates": [1, 2, 3], "labels": [1, 0, 0]}
    assert "sentiment_labels" not in MTRecCollator(plain)([feature])
    batch = MTRecCollator(table)([feature])
    torch.testing.assert_close(batch["sentiment_labels"], torch.tensor([2, -100, 0, -100]))  # rows 0, 1, 2, 3
    assert "sentiment_labels" not in MTRecCollator(table, with_aux_labels=False)([feature])
