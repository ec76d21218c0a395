"""LoRA on MTRec's news encoder (`modeling_mtrec.training.lora`): what trains, the surgery, save/load, merge."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModel, BertConfig, BertModel

pytest.importorskip("peft")

from modeling_mtrec import MTRecModel  # noqa: E402
from modeling_mtrec.training.lora import apply_lora, load_lora_model, main, merge_lora, save_lora_model  # noqa: E402
from tests.testing_utils import random_batch  # noqa: E402
from tests.models.mtrec import exactness_run  # noqa: E402
from tests.models.mtrec.test_exactness import _reference, _trainer, assert_same_params, final_params  # noqa: E402
from tests.training.test_frozen_states import frozen_model  # noqa: E402

LORA = dict(r=4, alpha=8, dropout=0.0)  # no LoRA dropout: the exactness runs must compute the same function


def lora_model(k: int = 0, seed: int = 0, **lora):
    return apply_lora(frozen_model(k=k, seed=seed), **{**LORA, **lora})


def perturb(model, seed: int = 1) -> None:
    """Stands for training: every trainable weight moves (LoRA's B starts at zero, so B A would be 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=g))


def trainable(model) -> set[str]:
    return {n.removeprefix("base_model.model.") for n, p in model.named_parameters() if p.requires_grad}


@pytest.fixture
def bert_dir(tmp_path):
    """A tiny BERT checkpoint: the base whose weights the adapter folder does not hold."""
    torch.manual_seed(0)
    encoder = BertModel(BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                   intermediate_size=37, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
                        add_pooling_layer=False)
    encoder.save_pretrained(tmp_path / "bert")
    return str(tmp_path / "bert")


@pytest.fixture
def adapter(tmp_path, bert_dir):
    """A saved LoRA folder of a "trained" model built from `bert_dir`, and that model."""
    base = MTRecModel.from_pretrained_encoder(
        bert_dir, id2category={0: "news", 1: "sports", 2: "finance"}, max_title_length=12, max_history_length=5,
        num_negatives=2, user_attention_dim=16, head_dropout=0.0,
    )
    model = apply_lora(base, **LORA, base_model_name_or_path=bert_dir)
    perturb(model)
    save_lora_model(model, tmp_path / "adapter")
    return tmp_path / "adapter", model.eval()


# --------------------------------------------------------------------------------------------- what trains


@pytest.mark.parametrize("k", [0, 1])
def test_lora_trains_adapters_of_unfrozen_layers_and_the_whole_user_encoder_and_heads(k):
    model = lora_model(k=k, target_modules=["query", "value"])
    names = trainable(model)
    lora = {n for n in names if ".lora_" in n}
    layers = range(k, 2)
    assert lora == {f"news_encoder.encoder.layer.{i}.attention.self.{m}.lora_{ab}.default.weight"
                    for i in layers for m in ("query", "value") for ab in "AB"}
    assert names - lora == {
        f"{head}.modules_to_save.default.{p}" for head, ps in
        (("user_encoder", ("query", "proj.weight", "proj.bias")), ("category_head", ("weight", "bias")),
         ("ner_head", ("weight", "bias"))) for p in ps
    }


def test_lora_arguments_are_checked():
    with pytest.raises(ValueError, match="target_modules"):
        lora_model(target_modules=["query.*"])
    with pytest.raises(ValueError, match="nothing to adapt"):
        lora_model(k=2)
    with pytest.raises(ValueError, match="r must"):
        lora_model(r=0)


# ------------------------------------------------------------------------------------------------ surgery


def test_surgery_exact_under_lora(tmp_path):
    """The trainer's step equals the surgery by hand; the shared parameters are exactly the LoRA matrices."""
    for seed in range(60):
        model = lora_model()
        perturb(model)  # B != 0, so the main loss reaches A too
        batch = random_batch(seed=seed)
        params, expected, dot = _reference(model.train(), batch)
        if dot < 0:
            break
    else:
        raise AssertionError("no conflicting batch found")
    for p in params:
        p.grad = None
    model.zero_grad()
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    _trainer(tmp_path, model).training_step(model, dict(batch))
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.grad, e, rtol=1e-5, atol=1e-7)
    out = model(**batch)
    g_main = torch.autograd.grad(out.main_loss, params, retain_graph=True, allow_unused=True)
    g_aux = torch.autograd.grad(out.category_loss + out.ner_loss, params, allow_unused=True)
    shared = {n for n, m, a in zip(names, g_main, g_aux) if m is not None and a is not None}
    assert shared == {n for n in names if ".lora_" in n}


def test_surgery_accumulation_equals_one_big_batch_under_lora(tmp_path, monkeypatch):
    monkeypatch.setattr(exactness_run, "build_model", lora_model)
    exactness_run.train(str(tmp_path / "concat"), "mtrec", concatenate=2)
    exactness_run.train(str(tmp_path / "accumulated"), "mtrec", gradient_accumulation_steps=2)
    trained = final_params(tmp_path / "concat")
    assert_same_params(final_params(tmp_path / "accumulated"), trained)
    assert all(trained[n].abs().max() > 0 for n in trained if ".lora_B." in n)  # the adapters did learn


# ----------------------------------------------------------------------------------------- save, load, merge


def test_adapter_folder_holds_no_frozen_weights_and_loads_to_the_same_model(adapter, tmp_path):
    folder, model = adapter
    assert {"adapter_config.json", "adapter_model.safetensors", "config.json"} <= set(os.listdir(folder))
    assert not (folder / "model.safetensors").exists()
    batch = random_batch()
    with torch.no_grad():
        expected = model(**batch).logits
        # the base recorded in adapter_config.json: the BERT checkpoint
        torch.testing.assert_close(load_lora_model(folder).eval()(**batch).logits, expected, rtol=0, atol=0)
        # an MTRec folder as the base (LoRA on a trained MTRec, `--init_from`): its user encoder and heads are
        # replaced by the adapter's
        MTRecModel.from_pretrained_encoder(
            model.peft_config["default"].base_model_name_or_path, id2category={0: "a", 1: "b", 2: "c"},
            max_title_length=12, max_history_length=5, num_negatives=2, user_attention_dim=16,
        ).save_pretrained(tmp_path / "mtrec-base")
        loaded = load_lora_model(folder, base=tmp_path / "mtrec-base").eval()
        torch.testing.assert_close(loaded(**batch).logits, expected, rtol=0, atol=0)


def test_merged_folder_gives_the_adapter_models_vectors(adapter, tmp_path):
    folder, model = adapter
    main(["merge", "--adapter", str(folder), "--output", str(tmp_path / "merged")])
    merged = AutoModel.from_pretrained(tmp_path / "merged").eval()
    assert type(merged) is MTRecModel
    assert not any("lora" in n or "modules_to_save" in n for n in merged.state_dict())
    batch = random_batch()
    with torch.no_grad():
        ids, mask = batch["news_input_ids"], batch["news_attention_mask"]
        torch.testing.assert_close(merged.encode_items(ids, mask), model.encode_items(ids, mask), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(merged(**batch).logits, model(**batch).logits, rtol=1e-5, atol=1e-6)


_NO_PEFT = """
import sys, torch

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("peft", "modeling_mtrec"):
            raise ImportError(f"blocked: {name}")
        return None

sys.meta_path.insert(0, Block())
sys.modules["peft"] = None  # transformers asks whether peft is installed: it is not
from transformers import AutoModel

model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
assert not any(m.split(".")[0] in ("peft", "modeling_mtrec") for m in sys.modules if sys.modules[m] is not None)
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
with torch.no_grad():
    torch.save(model(**torch.load(sys.argv[2])).logits, sys.argv[3])
"""


def test_merged_folder_loads_as_remote_code_without_peft(adapter, tmp_path):
    folder, model = adapter
    merge_lora(folder, tmp_path / "merged")
    batch = random_batch()
    torch.save(batch, tmp_path / "batch.pt")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    result = subprocess.run(
        [sys.executable, "-c", _NO_PEFT, str(tmp_path / "merged"), str(tmp_path / "batch.pt"), str(tmp_path / "out.pt")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with torch.no_grad():
        torch.testing.assert_close(torch.load(tmp_path / "out.pt"), model(**batch).logits, rtol=1e-5, atol=1e-6)
