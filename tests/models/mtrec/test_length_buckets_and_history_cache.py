"""SpeedyFeed-style savings: length-aware encoding (length buckets) and the history-vector cache.

- `length_buckets`: news vectors, losses and gradients equal the padded path's within float tolerance, and the
  groups leave fewer padded tokens;
- cached news vectors: taken as constants (no gradient), left out of the auxiliary losses;
- `HistoryVectorCache`: staleness rule, growth, state round trip;
- `MTRecTrainer(history_cache_steps=T)`: candidates are never reused, fewer titles reach BERT, T = 0 is the
  exact default, and a resumed run ends where the uninterrupted run ends.
"""

from __future__ import annotations

import os

import pytest
import torch
from transformers import BertConfig

from modeling_mtrec import MTRecConfig, MTRecModel, MTRecTrainer, MTRecTrainingArguments
from modeling_mtrec.data import generate_synthetic_mind, synthetic_tokenizer
from modeling_mtrec.models.mtrec.collator import MTRecCollator
from modeling_mtrec.models.mtrec.corpus import load_mind
from modeling_mtrec.models.mtrec.modeling_mtrec import length_groups
from modeling_mtrec.vectors import HistoryVectorCache
from tests.testing_utils import random_batch, tiny_config


def no_dropout_model(**overrides) -> MTRecModel:
    torch.manual_seed(0)
    encoder = BertConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    return MTRecModel(tiny_config(encoder_config=encoder, head_dropout=0.0, **overrides))


# ------------------------------------------------------------------------------------ length-aware encoding


def test_length_groups_are_optimal_contiguous_runs():
    lengths = sorted([3, 3, 4, 9, 9, 10, 10, 10, 22])
    for k in (1, 2, 3, 4):
        runs = length_groups(lengths, k)
        assert len(runs) <= k and runs[0][0] == 0 and runs[-1][1] == len(lengths)
        assert all(a[1] == b[0] for a, b in zip(runs, runs[1:]))
        cost = sum((end - start) * lengths[end - 1] for start, end in runs)

        # Brute force over every way to cut into at most k runs.
        def best(start: int, k_left: int) -> float:
            if start == len(lengths):
                return 0
            if k_left == 0:
                return float("inf")
            return min(
                (end - start) * lengths[end - 1] + best(end, k_left - 1) for end in range(start + 1, len(lengths) + 1)
            )

        assert cost == best(0, k)
    assert length_groups([], 3) == []


@pytest.mark.parametrize("buckets", [2, 4, 30])
def test_length_buckets_match_the_padded_path(buckets):
    batch = random_batch(seed=3, num_news=12, length=10)
    plain = no_dropout_model()
    bucketed = no_dropout_model(length_buckets=buckets)
    bucketed.load_state_dict(plain.state_dict())
    out_plain, out_bucketed = plain(**batch), bucketed(**batch)
    torch.testing.assert_close(out_bucketed.news_embeds, out_plain.news_embeds, rtol=1e-5, atol=1e-5)
    for name in ("loss", "main_loss", "category_loss", "ner_loss"):
        torch.testing.assert_close(getattr(out_bucketed, name), getattr(out_plain, name), rtol=1e-5, atol=1e-6)
    out_plain.loss.backward()
    out_bucketed.loss.backward()
    for (name, p), q in zip(plain.named_parameters(), bucketed.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_length_buckets_encode_fewer_padded_tokens():
    batch = random_batch(seed=3, num_news=12, length=10)
    model = no_dropout_model(length_buckets=3).eval()
    seen = []
    model.news_encoder.register_forward_hook(lambda m, args, kwargs, out: seen.append(kwargs["input_ids"].numel()),
                                             with_kwargs=True)
    model(**batch)
    assert len(seen) > 1  # several groups
    real = int(batch["news_attention_mask"].sum())
    assert real <= sum(seen) < batch["news_input_ids"].numel()


def test_length_buckets_fall_back_on_left_padding():
    batch = random_batch(seed=4, num_news=6, length=8)
    mask = batch["news_attention_mask"]
    left = {**batch, "news_attention_mask": mask.flip(1), "news_input_ids": batch["news_input_ids"].flip(1)}
    plain, bucketed = no_dropout_model(), no_dropout_model(length_buckets=3)
    bucketed.load_state_dict(plain.state_dict())
    torch.testing.assert_close(bucketed(**left).news_embeds, plain(**left).news_embeds)


def test_length_buckets_config_is_validated():
    with pytest.raises(ValueError, match="length_buckets"):
        tiny_config(length_buckets=0)


# ------------------------------------------------------------------------------------ cached news vectors


def test_cached_news_are_constants_outside_the_auxiliary_losses():
    batch = random_batch(seed=5, num_news=9)
    model = no_dropout_model()
    cached_mask = torch.zeros(9, dtype=torch.bool)
    cached_mask[[1, 4, 7]] = True
    cached = torch.randn(9, 32, requires_grad=True)
    out = model(**batch, cached_news_embeds=cached, cached_news_mask=cached_mask)
    torch.testing.assert_close(out.news_embeds[cached_mask], cached[cached_mask].detach())
    fresh = (~cached_mask).nonzero(as_tuple=True)[0]
    subset = model(
        news_input_ids=batch["news_input_ids"][fresh], news_attention_mask=batch["news_attention_mask"][fresh],
        category_labels=batch["category_labels"][fresh], ner_labels=batch["ner_labels"][fresh],
    )
    torch.testing.assert_close(out.news_embeds[fresh], subset.news_embeds)
    torch.testing.assert_close(out.category_loss, subset.category_loss)
    torch.testing.assert_close(out.ner_loss, subset.ner_loss)
    out.loss.backward()
    assert cached.grad is None  # no gradient flows into cached vectors


def test_an_all_false_cache_mask_is_the_plain_forward():
    batch = random_batch(seed=6)
    model = no_dropout_model()
    plain = model(**batch)
    cached = model(**batch, cached_news_embeds=torch.zeros(9, 32), cached_news_mask=torch.zeros(9, dtype=torch.bool))
    torch.testing.assert_close(cached.loss, plain.loss)


# ------------------------------------------------------------------------------------ HistoryVectorCache


def test_history_cache_staleness_growth_and_state():
    cache = HistoryVectorCache(max_age_steps=1)
    vectors, hit = cache.lookup(torch.tensor([0, 5]), step=0)
    assert vectors is None and not hit.any()
    cache.update(torch.tensor([3]), torch.full((1, 4), 2.0), step=7)
    cache.update(torch.tensor([5000]), torch.full((1, 4), 3.0), step=8)  # grows past the first capacity
    vectors, hit = cache.lookup(torch.tensor([3, 5000, 9999, 4]), step=8)
    assert hit.tolist() == [True, True, False, False]
    assert vectors[1].tolist() == [3.0] * 4
    assert cache.lookup(torch.tensor([3]), step=9)[1].tolist() == [False]  # 2 steps old > max_age_steps = 1
    assert cache.lookup(torch.tensor([3]), step=6)[1].tolist() == [False]  # from the future: never reused
    restored = HistoryVectorCache(max_age_steps=1)
    restored.load_state_dict(cache.state_dict())
    assert len(restored) == len(cache) == 2
    assert torch.equal(restored.lookup(torch.tensor([5000]), step=8)[0], cache.lookup(torch.tensor([5000]), step=8)[0])
    with pytest.raises(ValueError, match="width"):
        cache.update(torch.tensor([1]), torch.zeros(1, 5), step=8)
    with pytest.raises(ValueError, match="max_age_steps"):
        HistoryVectorCache(0)


# ------------------------------------------------------------------------------------ trainer


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    dirs = generate_synthetic_mind(str(tmp_path_factory.mktemp("data")), seed=0, num_users=20, num_dev_users=5)
    tokenizer = synthetic_tokenizer()
    return tokenizer, load_mind(tokenizer, train_dir=dirs["train"], max_title_length=16, max_history_length=10)


def run_training(corpus, output_dir, *, history_cache_steps=0, resume=None, max_steps=None, save_steps=None,
                 counter=None):
    tokenizer, data = corpus
    torch.manual_seed(0)
    model = MTRecModel(
        MTRecConfig(
            encoder_config=BertConfig(
                vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=37, max_position_embeddings=32,
            ),
            id2category={i: c for c, i in data.category2id.items()}, max_title_length=16, max_history_length=10,
            user_attention_dim=16,
        )
    )
    if counter is not None:
        model.news_encoder.register_forward_hook(
            lambda m, args, kwargs, out: counter.append(kwargs["input_ids"].shape[0]), with_kwargs=True
        )
    args = MTRecTrainingArguments(
        output_dir=str(output_dir), per_device_train_batch_size=8, num_train_epochs=2, learning_rate=1e-3,
        save_strategy="steps" if save_steps else "no", save_steps=save_steps or 500, report_to=[], use_cpu=True,
        seed=0, logging_steps=1, disable_tqdm=True, history_cache_steps=history_cache_steps,
        max_steps=max_steps or -1,
    )
    collator = MTRecCollator(data.news, num_negatives=2, pad_token_id=tokenizer.pad_token_id, seed=0)
    trainer = MTRecTrainer(model=model, args=args, train_dataset=data.train.select(range(24)), data_collator=collator)
    trainer.train(resume_from_checkpoint=resume)
    return trainer, {n: p.detach().clone() for n, p in trainer.model.named_parameters()}


@pytest.fixture(scope="module")
def plain_run(corpus, tmp_path_factory):
    """The default run (no cache): its final parameters and the rows BERT encoded at each step."""
    counts = []
    _, params = run_training(corpus, tmp_path_factory.mktemp("plain"), counter=counts)
    return params, counts


def test_history_cache_encodes_fewer_titles_and_never_reuses_candidates(corpus, plain_run, tmp_path, monkeypatch):
    plain_counts, cached_counts = plain_run[1], []
    reuse_seen = []
    original = MTRecModel.forward

    def spy(self, *args, **kwargs):
        mask = kwargs.get("cached_news_mask")
        if mask is not None:
            candidates = kwargs["candidate_index"][kwargs["candidate_mask"].bool()]
            assert not mask[candidates].any(), "a candidate was taken from the cache"
            reuse_seen.append(int(mask.sum()))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MTRecModel, "forward", spy)
    trainer, _ = run_training(corpus, tmp_path / "cached", history_cache_steps=2, counter=cached_counts)
    assert len(plain_counts) == len(cached_counts)  # one encoder call per step in both (no length buckets)
    assert sum(reuse_seen) > 0 and sum(cached_counts) < sum(plain_counts)
    assert sum(plain_counts) - sum(cached_counts) == sum(reuse_seen)
    logged = [e["history_cache_reuse"] for e in trainer.state.log_history if "history_cache_reuse" in e]
    assert logged and max(logged) > 0


def test_history_cache_off_is_the_exact_default(corpus, plain_run, tmp_path):
    default = plain_run[0]
    _, explicit = run_training(corpus, tmp_path / "b", history_cache_steps=0)
    assert all(torch.equal(default[n], explicit[n]) for n in default)


def test_history_cache_changes_the_run_and_resumes_exactly(corpus, plain_run, tmp_path):
    plain = plain_run[0]
    _, full = run_training(corpus, tmp_path / "full", history_cache_steps=2, save_steps=4)
    assert any(not torch.allclose(plain[n], full[n]) for n in plain)  # the cache is really used
    checkpoint = tmp_path / "full" / "checkpoint-4"
    assert (checkpoint / "history_cache_rank0.safetensors").is_file()
    _, resumed = run_training(corpus, tmp_path / "resumed", history_cache_steps=2, resume=str(checkpoint))
    worst = max((full[n] - resumed[n]).abs().max().item() for n in full)
    assert worst <= 1e-6, worst


def test_resuming_a_cached_run_without_its_cache_file_is_refused(corpus, tmp_path):
    run_training(corpus, tmp_path / "full", history_cache_steps=2, save_steps=4, max_steps=4)
    checkpoint = tmp_path / "full" / "checkpoint-4"
    os.remove(checkpoint / "history_cache_rank0.safetensors")
    with pytest.raises(FileNotFoundError, match="history_cache_rank0"):
        run_training(corpus, tmp_path / "resumed", history_cache_steps=2, resume=str(checkpoint))


def test_history_cache_arguments_are_validated():
    with pytest.raises(ValueError, match="history_cache_steps"):
        MTRecTrainingArguments(output_dir="unused", history_cache_steps=-1)


def test_history_cache_needs_a_collator_with_news_rows(tmp_path):
    args = MTRecTrainingArguments(output_dir=str(tmp_path), history_cache_steps=2, use_cpu=True, report_to=[])
    with pytest.raises(ValueError, match="news-table row"):
        MTRecTrainer(model=no_dropout_model(), args=args, data_collator=lambda f: f[0])
