from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModel, BertConfig

from modeling_mtrec import FoundationConfig, FoundationModel
from modeling_mtrec.models.foundation.modeling_foundation import (
    js_divergence,
    js_regularizer,
    mean_pool,
    mmd_regularizer,
)
from tests.models.foundation.foundation_helpers import (
    DOMAINS,
    make_model,
    random_batch,
    save_tiny_lm,
    tiny_config,
)

# ----------------------------------------------------------------------------------------------- forward


def test_output_shapes_and_loss_is_weighted_sum_of_parts():
    model = make_model(ctr_loss_weight=0.7, relevance_loss_weight=1.3, regularizer_weight=0.4).eval()
    batch = random_batch()
    out = model(**batch)
    B = batch["domain_ids"].shape[0]
    assert out.ctr_logits.shape == out.relevance_logits.shape == (B,)
    assert out.query_aspect_weights.shape == out.item_aspect_weights.shape == (B, 3)
    assert out.expert_gate_weights.shape == (B, 2, 3)
    assert out.domain_adapted_states.shape == (B, 24)
    for name in ("loss", "ctr_loss", "relevance_loss", "regularizer_loss"):
        assert getattr(out, name).shape == () and torch.isfinite(getattr(out, name)), name
    torch.testing.assert_close(out.loss, 0.7 * out.ctr_loss + 1.3 * out.relevance_loss + 0.4 * out.regularizer_loss)
    # The relevance loss covers the search rows only (recommendation rows carry -100).
    keep = batch["relevance_labels"] != -100
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        out.relevance_logits[keep], batch["relevance_labels"][keep].float()
    )
    torch.testing.assert_close(out.relevance_loss, expected)


def test_no_labels_no_loss_and_tuple_output():
    model = make_model().eval()
    out = model(**random_batch(labels=False))
    assert out.loss is None and out.ctr_loss is None and out.regularizer_loss is None
    as_tuple = model(**random_batch(labels=False), return_dict=False)
    torch.testing.assert_close(as_tuple[0], out.ctr_logits)


@pytest.mark.parametrize("mtl, width", [("mmoe", 3), ("ple", 1 + 2), ("shared_bottom", None)])
def test_multi_task_modules_and_their_gate_weights(mtl, width):
    out = make_model(mtl_module=mtl).eval()(**random_batch())
    if width is None:
        assert out.expert_gate_weights is None
    else:
        assert out.expert_gate_weights.shape == (8, 2, width)
        torch.testing.assert_close(out.expert_gate_weights.sum(-1), torch.ones(8, 2))
    assert torch.isfinite(out.loss)


# ---------------------------------------------------------------------------------------------- gating


@pytest.mark.parametrize("gating", ["mean", "cls", "domain"])
def test_aspect_weights_sum_to_one_where_aspects_exist(gating):
    batch = random_batch()
    out = make_model(gating=gating).eval()(**batch)
    torch.testing.assert_close(out.item_aspect_weights.sum(-1), torch.ones(8))
    search = batch["query_text_index"] >= 0
    torch.testing.assert_close(out.query_aspect_weights[search].sum(-1), torch.ones(int(search.sum())))
    # Recommendation rows have no query: all weights 0 (the learned empty-query vector stands in).
    assert torch.all(out.query_aspect_weights[~search] == 0)
    # Row 1's item has no id: weight 0 on the id aspect, the others renormalised.
    assert out.item_aspect_weights[1, 0] == 0
    if gating == "mean":
        torch.testing.assert_close(out.item_aspect_weights[1], torch.tensor([0.0, 0.5, 0.5]))
        torch.testing.assert_close(out.item_aspect_weights[0], torch.full((3,), 1 / 3))


def test_domain_gating_weights_differ_between_domains_and_cls_weights_do_not():
    batch = random_batch()
    for key in batch:  # the same row in every domain
        if key not in ("text_embeds",):
            batch[key] = batch[key][:1].expand(3, *batch[key].shape[1:]).clone()
    batch["domain_ids"] = torch.arange(3)
    domain = make_model(gating="domain").eval()(**batch).item_aspect_weights
    assert not torch.allclose(domain[0], domain[1]) and not torch.allclose(domain[1], domain[2])
    cls = make_model(gating="cls").eval()(**batch).item_aspect_weights
    torch.testing.assert_close(cls[0], cls[1])


def test_domain_gating_is_softmax_of_scaled_dot_products():
    model = make_model(gating="domain").eval()
    batch = random_batch()
    out = model(**batch)
    vectors, present = model._aspects("item", batch["item_ids"], batch["item_sparse_ids"], batch["item_text_index"],
                                      model.encode_texts(batch["text_embeds"]), (8,))
    key = model.fusion.item_gating.domain_embeddings(batch["domain_ids"])  # (B, d)
    logits = (vectors @ key[:, :, None]).squeeze(-1) / math.sqrt(16)
    expected = logits.masked_fill(~present, -math.inf).softmax(-1)
    torch.testing.assert_close(out.item_aspect_weights, expected)


# ------------------------------------------------------------------------------------------ regularisers


def test_js_divergence_known_values():
    assert js_divergence(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])).item() == pytest.approx(math.log(2))
    p = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    assert js_divergence(p, p).item() == pytest.approx(0.0, abs=1e-12)
    q = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64)
    m = (p + q) / 2
    expected = 0.5 * float((p * (p / m).log()).sum()) + 0.5 * float((q * (q / m).log()).sum())
    assert js_divergence(p, q).item() == pytest.approx(expected, rel=1e-12)


def _reference_histogram_js(x: np.ndarray, domains: np.ndarray, bins: int) -> float:
    """Loop-by-loop reference of the histogram estimator (module NOTE), written independently in numpy."""
    z = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-8)
    centers = np.linspace(-3, 3, bins)
    h = 6 / (bins - 1)
    present = sorted(set(domains.tolist()))
    hists = {}
    for k in present:
        rows = z[domains == k]
        hist = np.zeros((x.shape[1], bins))
        for row in rows:
            for j, value in enumerate(row):
                w = np.exp(-((value - centers) ** 2) / (2 * h * h))
                hist[j] += w / w.sum()
        hists[k] = hist / len(rows)
    total = 0.0
    for a in range(len(present)):
        for b in range(a + 1, len(present)):
            p, q = hists[present[a]], hists[present[b]]
            m = (p + q) / 2
            js = 0.5 * (p * np.log(p / m)).sum(1) + 0.5 * (q * np.log(q / m)).sum(1)
            total += js.mean()
    return total


def test_js_histogram_estimator_equals_hand_computed_value():
    x = np.array([[0.1, 2.0], [0.5, -1.0], [1.5, 0.3], [-0.7, 0.9], [2.2, -0.4]])
    domains = np.array([0, 0, 1, 1, 2])
    got = js_regularizer(torch.tensor(x, dtype=torch.float64), torch.tensor(domains), "histogram", num_bins=5)
    assert got.item() == pytest.approx(_reference_histogram_js(x, domains, 5), rel=1e-6)


def test_js_softmax_estimator_equals_hand_computed_value():
    x = torch.tensor([[1.0, 0.0], [0.0, 0.0], [2.0, 1.0]], dtype=torch.float64)
    p = (torch.softmax(x[0], 0) + torch.softmax(x[1], 0)) / 2
    q = torch.softmax(x[2], 0)
    m = (p + q) / 2
    expected = 0.5 * (p * (p / m).log()).sum() + 0.5 * (q * (q / m).log()).sum()
    got = js_regularizer(x, torch.tensor([0, 0, 1]), "softmax")
    assert got.item() == pytest.approx(expected.item(), rel=1e-9)


@pytest.mark.parametrize("estimator", ["histogram", "softmax"])
def test_js_is_zero_for_identical_distributions_and_one_domain(estimator):
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    both = torch.cat([x, x])  # domain 0 and domain 1 hold the same rows
    assert js_regularizer(both, torch.tensor([0] * 4 + [1] * 4), estimator).item() == pytest.approx(0.0, abs=1e-7)
    assert js_regularizer(x, torch.zeros(4, dtype=torch.long), estimator).item() == 0.0


def test_js_histogram_is_scale_invariant_but_softmax_is_not():
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
    domains = torch.arange(16) % 2
    hist = js_regularizer(x, domains, "histogram")
    assert js_regularizer(1e-2 * x, domains, "histogram").item() == pytest.approx(hist.item(), rel=1e-3)
    assert js_regularizer(1e-2 * x, domains, "softmax") < 1e-3 * js_regularizer(x, domains, "softmax")


def test_mmd_equals_hand_computed_value():
    x = torch.tensor([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]], dtype=torch.float64)
    domains = torch.tensor([0, 0, 1])
    z = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + 1e-8)

    def k(a, b):
        sq = float(((a - b) ** 2).sum())
        return np.mean([math.exp(-sq / (2 * s * s * 2)) for s in (0.5, 1.0, 2.0)])

    xx = np.mean([k(z[i], z[j]) for i in (0, 1) for j in (0, 1)])
    yy = k(z[2], z[2])
    xy = np.mean([k(z[i], z[2]) for i in (0, 1)])
    got = mmd_regularizer(x, domains, [0.5, 1.0, 2.0])
    assert got.item() == pytest.approx(xx + yy - 2 * xy, rel=1e-6)


def test_mmd_is_zero_for_identical_distributions_with_unequal_counts():
    a, b = torch.tensor([[0.3, -1.0]]), torch.tensor([[2.0, 0.5]])
    x = torch.cat([a, b, a, a, b, b])  # domain 0: {a, b}; domain 1: {a, a, b, b}
    domains = torch.tensor([0, 0, 1, 1, 1, 1])
    assert mmd_regularizer(x.double(), domains, [1.0]).item() == pytest.approx(0.0, abs=1e-12)
    shifted = x.clone()
    shifted[2:] += 1.0
    assert mmd_regularizer(shifted.double(), domains, [1.0]).item() > 0.05


def test_regulariser_sums_over_domain_pairs():
    x = torch.randn(9, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    domains = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    total = mmd_regularizer(x, domains, [1.0])
    # Pairwise values from the kernel on the batch-standardised x (standardisation is pooled over all rows).
    z = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + 1e-8)
    kernel = torch.exp(-torch.cdist(z, z).pow(2) / (2 * 3))
    g = lambda i, j: kernel[3 * i : 3 * i + 3, 3 * j : 3 * j + 3].mean()  # noqa: E731
    pairs = sum(g(i, i) + g(j, j) - 2 * g(i, j) for i, j in ((0, 1), (0, 2), (1, 2)))
    assert total.item() == pytest.approx(pairs.item(), rel=1e-9)


# ------------------------------------------------------------------------------------- freeze / add_domain


def _params(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("split, frozen_prefixes", [("none", ()), ("L0", ("embeddings.",)), ("L0+L1", ("embeddings.", "encoders."))])
def test_freeze_split_leaves_exactly_the_named_parameters_unchanged(split, frozen_prefixes):
    model = make_model().train()
    frozen = model.freeze(split)
    assert sorted(frozen) == sorted(n for n, _ in model.named_parameters() if n.startswith(frozen_prefixes) and frozen_prefixes)
    before = _params(model)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for step in range(3):
        optimizer.zero_grad()
        model(**random_batch(seed=step)).loss.backward()
        optimizer.step()
    for name, param in model.named_parameters():
        if name in frozen:
            assert torch.equal(param, before[name]), f"{name} changed under freeze({split!r})"
        else:
            assert not torch.equal(param, before[name]), f"{name} did not train under freeze({split!r})"


def test_freeze_none_and_unknown_split():
    model = make_model()
    assert model.freeze("none") == [] and all(p.requires_grad for p in model.parameters())
    for split in ("L2", "embeddings"):  # only the paper's names
        with pytest.raises(ValueError, match=f"unknown freeze split '{split}'"):
            model.freeze(split)


@pytest.mark.parametrize("gating", ["domain", "cls"])
def test_add_domain_keeps_old_domains_outputs_and_starts_from_their_mean(gating):
    model = make_model(gating=gating).eval()
    batch = random_batch(labels=False)
    before = model(**batch)
    old_rows = model.domain_adaptive.domain_embeddings.weight.detach().clone()
    new_id = model.add_domain("delta")
    assert new_id == 3 and model.config.domains == [*DOMAINS, "delta"]
    after = model(**batch)
    for name in ("ctr_logits", "relevance_logits", "item_aspect_weights", "query_aspect_weights", "domain_adapted_states"):
        assert torch.equal(getattr(before, name), getattr(after, name)), name
    torch.testing.assert_close(model.domain_adaptive.domain_embeddings.weight[3], old_rows.mean(0))
    # The new domain runs and its rows train.
    batch["domain_ids"] = torch.full_like(batch["domain_ids"], 3)
    out = model.train()(**batch, click_labels=torch.ones(8, dtype=torch.long))
    out.loss.backward()
    assert model.domain_adaptive.domain_embeddings.weight.grad[3].abs().sum() > 0
    with pytest.raises(ValueError, match="already exists"):
        model.add_domain("alpha")


def test_add_domain_then_save_and_load(tmp_path):
    model = make_model().eval()
    model.add_domain("delta")
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert loaded.config.domains == [*DOMAINS, "delta"]
    batch = random_batch(labels=False)
    batch["domain_ids"] = torch.full_like(batch["domain_ids"], 3)
    torch.testing.assert_close(loaded(**batch).ctr_logits, model(**batch).ctr_logits, rtol=0, atol=0)


def test_without_domain_adaptive_layer_domain_does_not_change_outputs():
    model = make_model(use_domain_adaptive=False, gating="cls").eval()
    assert model.domain_adaptive.domain_embeddings is None
    batch = random_batch(labels=False)
    out = model(**batch)
    batch["domain_ids"] = (batch["domain_ids"] + 1) % 3
    torch.testing.assert_close(model(**batch).ctr_logits, out.ctr_logits, rtol=0, atol=0)
    with_da = make_model(gating="cls").eval()
    moved = with_da(**batch).ctr_logits
    batch["domain_ids"] = (batch["domain_ids"] + 1) % 3
    assert not torch.allclose(with_da(**batch).ctr_logits, moved)


# ------------------------------------------------------------------------------------------ save / load


def test_auto_classes_and_save_load_identical_outputs(tmp_path):
    model = make_model(mtl_module="ple", gating="cls", regularizer="mmd").eval()
    model.save_pretrained(tmp_path)
    assert os.path.isfile(tmp_path / "model.safetensors")
    assert isinstance(AutoConfig.from_pretrained(tmp_path), FoundationConfig)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, FoundationModel)
    batch = random_batch()
    a, b = model(**batch), loaded(**batch)
    for name in ("loss", "ctr_logits", "relevance_logits", "item_aspect_weights", "expert_gate_weights"):
        torch.testing.assert_close(getattr(b, name), getattr(a, name), rtol=0, atol=0)


def test_saved_folder_loads_as_remote_code_without_the_package(tmp_path):
    """What a Hub user gets with trust_remote_code=True: the folder's own code, modeling_mtrec never imported."""
    model = make_model().eval()
    model.save_pretrained(tmp_path / "model")
    batch = random_batch(labels=False)
    torch.save(batch, tmp_path / "batch.pt")
    expected = model(**batch).ctr_logits
    script = f"""
import sys, torch
from transformers import AutoModel
model = AutoModel.from_pretrained({str(tmp_path / "model")!r}, trust_remote_code=True).eval()
assert "modeling_mtrec" not in sys.modules, "the package was imported"
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
torch.save(model(**torch.load({str(tmp_path / "batch.pt")!r})).ctr_logits, {str(tmp_path / "logits.pt")!r})
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, env=env, timeout=300)
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), expected, rtol=0, atol=0)


# ------------------------------------------------------------------------------------- end-to-end LM


def test_end_to_end_lm_gives_the_cached_vectors_and_trains(tmp_path):
    from modeling_mtrec.vectors import mean_pooled_lm_vectors

    lm_path = save_tiny_lm(tmp_path / "lm")
    texts = ["Zorvak United wins the league", "stocks rally", "vaccine"]
    cached = mean_pooled_lm_vectors(texts, lm_path, max_length=16)  # the frozen-LM path of TextFeatureCache
    lm_config = BertConfig.from_pretrained(lm_path)
    model = make_model(text_encoder_config=lm_config.to_dict()).eval()
    from transformers import AutoTokenizer, BertModel

    model.embeddings.text_model.load_state_dict(BertModel.from_pretrained(lm_path, add_pooling_layer=False).state_dict())
    tokens = AutoTokenizer.from_pretrained(lm_path)(texts, padding=True, truncation=True, max_length=16, return_tensors="pt")
    hidden = model.embeddings.text_model(**tokens).last_hidden_state
    torch.testing.assert_close(mean_pool(hidden, tokens["attention_mask"]), cached, rtol=1e-5, atol=1e-5)
    # In the model: text_input_ids instead of text_embeds gives the same outputs, and the LM gets gradients.
    batch = random_batch(num_texts=3)
    with_vectors = model(**batch)
    batch.pop("text_embeds")
    batch["text_embeds"] = cached
    by_vectors = model(**batch).ctr_logits
    batch.pop("text_embeds")
    by_tokens = model(**batch, text_input_ids=tokens["input_ids"], text_attention_mask=tokens["attention_mask"])
    torch.testing.assert_close(by_tokens.ctr_logits, by_vectors, rtol=1e-5, atol=1e-5)
    assert with_vectors.loss is not None
    model.train()
    model(**batch, text_input_ids=tokens["input_ids"], text_attention_mask=tokens["attention_mask"]).loss.backward()
    assert model.embeddings.text_model.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    assert "embeddings.text_model.embeddings.word_embeddings.weight" in model.freeze("L0")


# ------------------------------------------------------------------------------------------------ config


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(gating="attention"), "`gating` must be one of"),
        (dict(mtl_module="moe"), "`mtl_module` must be one of"),
        (dict(regularizer="kl"), "`regularizer` must be one of"),
        (dict(aspects=["id", "image"]), "`aspects` must be distinct values"),
        (dict(text_embed_dim=0), "the text aspect needs `text_embed_dim`"),
        (dict(domains=["a", "a"]), "`domains` must be distinct"),
        (dict(embedding_dim=15, user_encoder_heads=2), "must divide `embedding_dim`=15"),
        (dict(item_id_buckets=1), "`item_id_buckets` needs bucket 0"),
        (dict(regularizer_weight=-1.0), "`regularizer_weight` must be >= 0"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**kwargs)


def test_config_round_trip_and_defaults():
    config = FoundationConfig()
    assert config.gating == "domain" and config.mtl_module == "mmoe" and config.regularizer == "js"
    assert config.aspects == ["id", "text", "sparse"] and config.text_encoder_config is None
    again = FoundationConfig.from_dict(tiny_config(text_encoder_config=BertConfig(hidden_size=12, num_attention_heads=2).to_dict()).to_dict())
    assert again.text_encoder_config.hidden_size == 12 and again.domains == DOMAINS


def test_model_without_text_or_id_aspects_runs():
    for aspects in (["id", "sparse"], ["text"]):
        model = make_model(aspects=aspects).eval()
        out = model(**random_batch())
        missing = [i for i, a in enumerate(("id", "text", "sparse")) if a not in aspects]
        assert torch.all(out.item_aspect_weights[:, missing] == 0)
        assert torch.isfinite(out.loss)


# ------------------------------------------------------------------------------------------ gradient surgery


@pytest.mark.parametrize("mode", ["mtrec", "pcgrad"])
def test_trainer_surgery_projects_ctr_against_relevance_and_adds_the_regulariser(tmp_path, mode):
    from modeling_mtrec.training import project_conflicting
    from modeling_mtrec.training.foundation import FoundationTrainer, FoundationTrainingArguments

    model = make_model(regularizer_weight=0.5, relevance_loss_weight=2.0)
    batch = random_batch(seed=3)
    params = [p for p in model.parameters() if p.requires_grad]
    out = model.train()(**batch)
    g = {name: torch.autograd.grad(w * loss, params, retain_graph=True, allow_unused=True)
         for name, w, loss in (("ctr", 1.0, out.ctr_loss), ("rel", 2.0, out.relevance_loss), ("reg", 0.5, out.regularizer_loss))}
    shared = [i for i in range(len(params)) if g["ctr"][i] is not None and g["rel"][i] is not None]
    flat = lambda name: torch.cat([g[name][i].reshape(-1) for i in shared])  # noqa: E731
    new_ctr, new_rel, dot, _ = project_conflicting(flat("ctr"), flat("rel"), mode)
    assert dot < 0  # this batch conflicts, so the surgery changes something
    expected = (new_ctr + new_rel).split([params[i].numel() for i in shared])

    args = FoundationTrainingArguments(output_dir=str(tmp_path), gradient_surgery=mode, report_to="none", use_cpu=True)
    trainer = FoundationTrainer(model=model, args=args)
    trainer.current_gradient_accumulation_steps = 1
    model.zero_grad()
    trainer.training_step(model, batch)
    for k, i in enumerate(shared):
        reg = g["reg"][i] if g["reg"][i] is not None else 0
        torch.testing.assert_close(params[i].grad, expected[k].view_as(params[i]) + reg, rtol=1e-5, atol=1e-6)
    only_ctr = [i for i in range(len(params)) if g["ctr"][i] is not None and g["rel"][i] is None]
    for i in only_ctr:  # reached by one task only: that task's gradient (+ the regulariser's)
        torch.testing.assert_close(params[i].grad, g["ctr"][i] + (g["reg"][i] if g["reg"][i] is not None else 0))


def test_unknown_surgery_mode_is_refused(tmp_path):
    from modeling_mtrec.training.foundation import FoundationTrainingArguments

    with pytest.raises(ValueError, match="gradient_surgery must be one of"):
        FoundationTrainingArguments(output_dir=str(tmp_path), gradient_surgery="cagrad")
