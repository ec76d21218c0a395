"""Tests every model of the package runs, as transformers' `ModelTesterMixin`: a new model gets them all by
subclassing `ModelTesterMixin` (or `ScoringModelTesterMixin`) in its own `tests/models/<name>/` and filling in the
few methods that describe it (a tiny configuration, a batch, item inputs).

What every model must do (`ModelTesterMixin`): give finite outputs and losses; send a gradient to every trainable
parameter; save and load (directly and through `AutoModel`) to identical outputs; load from a saved folder with
`trust_remote_code=True` where the `modeling_mtrec` package cannot be imported; keep the `model_type` and the
weight names of folders saved by earlier versions.

What a model with the scoring interface must do as well (`ScoringModelTesterMixin`): return user vectors of
`vector_size` and offer `encode_items` / `encode_users` / `score` (`modeling_mtrec.scoring`) consistently with its
own forward pass. A model whose score is a network over user, query and item together (the foundation model)
has no such interface and runs only the first mixin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from transformers import AutoConfig, AutoModel

import modeling_mtrec
from modeling_mtrec.scoring import ScoringModel, score_impressions
from tests.testing_utils import BLOCK_PACKAGE_SCRIPT

# Run in a fresh interpreter where the package cannot be imported: a saved folder's own code must be enough.
_REMOTE_CODE_SCRIPT = BLOCK_PACKAGE_SCRIPT + """
import torch
from transformers import AutoModel

model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
assert not any(m == "modeling_mtrec" or m.startswith("modeling_mtrec.") for m in sys.modules), "package imported"
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
inputs = torch.load(sys.argv[2])
torch.manual_seed(0)  # the same random draws (e.g. SSL augmentations) as the parent's forward
with torch.no_grad():
    out = model(**inputs)
torch.save({name: getattr(out, name) for name in sys.argv[4].split(",")}, sys.argv[3])
"""


class ModelTesterMixin:
    """The model-agnostic common tests; a subclass named ``Test<Model>`` runs them for one model.

    A subclass sets `model_class`, `loss_names` (the total first, then each part), `logit_names` (the output
    fields that hold scores, compared exactly after save / load), `legacy_model_type` and `legacy_state_dict_keys`
    (the weight names of a folder saved by an earlier version with `get_config()`, written down once from that
    version's code) and defines `get_config` and `get_inputs` (a training batch with every label, as the collator
    makes it).
    """

    model_class: type
    loss_names: tuple[str, ...] = ("loss",)
    logit_names: tuple[str, ...] = ("logits",)
    legacy_model_type: str
    legacy_state_dict_keys: frozenset[str]

    def get_config(self):
        raise NotImplementedError

    def get_inputs(self, config) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def make_model(self, seed: int = 0):
        torch.manual_seed(seed)
        return self.model_class(self.get_config()).eval()

    def forward(self, model, inputs: dict[str, torch.Tensor]):
        torch.manual_seed(0)  # models that draw random augmentations in forward draw the same ones each call
        return model(**inputs)

    # ------------------------------------------------------------------------------------------ outputs

    def assert_logits_equal(self, actual, expected) -> None:
        """Every field of `logit_names` bit for bit (both outputs, or dicts of the fields)."""
        get = (lambda o, n: o[n]) if isinstance(expected, dict) else getattr
        for name in self.logit_names:
            torch.testing.assert_close(get(actual, name), get(expected, name), rtol=0, atol=0, msg=name)

    def test_output_shapes(self):
        model = self.make_model()
        self.check_output_shapes(model, self.forward(model, self.get_inputs(model.config)))

    def check_output_shapes(self, model, out) -> None:
        assert out.loss is not None and out.loss.shape == ()
        # Every score field has one row per batch row: they agree on their first dimension.
        rows = {getattr(out, name).shape[0] for name in self.logit_names}
        assert len(rows) == 1, {name: tuple(getattr(out, name).shape) for name in self.logit_names}
        for name in self.logit_names:
            assert torch.isfinite(getattr(out, name)).all(), name

    def test_losses_are_finite(self):
        model = self.make_model()
        out = self.forward(model.train(), self.get_inputs(model.config))
        for name in self.loss_names:
            value = getattr(out, name)
            assert value is not None and value.shape == () and torch.isfinite(value), name

    def test_gradients_reach_every_trainable_parameter(self):
        model = self.make_model().train()
        self.forward(model, self.get_inputs(model.config)).loss.backward()
        missing = [
            name for name, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
        ]
        assert missing == []

    # -------------------------------------------------------------------------------------- save / load

    def test_save_load_gives_identical_outputs(self, tmp_path):
        model = self.make_model()
        inputs = self.get_inputs(model.config)
        model.save_pretrained(tmp_path)
        loaded = self.model_class.from_pretrained(tmp_path).eval()
        a, b = self.forward(model, inputs), self.forward(loaded, inputs)
        self.assert_logits_equal(b, a)
        for name in self.loss_names:
            torch.testing.assert_close(getattr(b, name), getattr(a, name), rtol=0, atol=0, msg=name)
        for name, tensor in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[name], tensor), name

    def test_auto_model_round_trip(self, tmp_path):
        model = self.make_model()
        model.save_pretrained(tmp_path)
        saved = json.loads((tmp_path / "config.json").read_text())
        assert saved["model_type"] == model.config.model_type
        assert saved["auto_map"]["AutoModel"].endswith(self.model_class.__name__)
        modeling_file = saved["auto_map"]["AutoModel"].split(".")[0] + ".py"
        assert (tmp_path / modeling_file).is_file()  # the code travels with the weights
        assert not (tmp_path / "README.md").exists()  # no side effect: cards are written by the trainers
        assert type(AutoConfig.from_pretrained(tmp_path)) is type(model.config)
        loaded = AutoModel.from_pretrained(tmp_path).eval()
        assert type(loaded) is self.model_class
        inputs = self.get_inputs(model.config)
        self.assert_logits_equal(self.forward(loaded, inputs), self.forward(model, inputs))

    def test_remote_code_loads_without_the_package(self, tmp_path):
        model = self.make_model()
        inputs = self.get_inputs(model.config)
        model.save_pretrained(tmp_path / "model")
        torch.save(inputs, tmp_path / "inputs.pt")
        with torch.no_grad():
            expected = self.forward(model, inputs)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
        result = subprocess.run(
            [sys.executable, "-c", _REMOTE_CODE_SCRIPT, str(tmp_path / "model"), str(tmp_path / "inputs.pt"),
             str(tmp_path / "logits.pt"), ",".join(self.logit_names)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        self.assert_logits_equal(torch.load(tmp_path / "logits.pt"), {n: getattr(expected, n) for n in self.logit_names})

    def test_folders_saved_by_earlier_versions_still_load(self):
        """Same model_type and weight names as earlier versions' code (for MTRec and the two-tower: before the
        layout change of issue 8), so the folders they saved load."""
        model = self.make_model()
        assert model.config.model_type == self.legacy_model_type
        assert modeling_mtrec.MODELS.count((type(model.config), self.model_class)) == 1
        assert set(model.state_dict()) == set(self.legacy_state_dict_keys)


class ScoringModelTesterMixin(ModelTesterMixin):
    """The common tests of a model with the scoring interface: the model-agnostic ones and the interface's.

    On top of `ModelTesterMixin`'s, a subclass defines `get_item_inputs` (`encode_items` inputs of `num_items`
    items) and, for a user encoder with more inputs than the history, `get_user_inputs`. Its output has
    `user_embeds` (B, vector_size) and `logits` (B, C).
    """

    num_items = 7

    def get_item_inputs(self, config, num_items: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def get_user_inputs(self, batch_size: int) -> dict[str, torch.Tensor]:
        return {}

    def check_output_shapes(self, model, out) -> None:
        super().check_output_shapes(model, out)
        batch_size = out.user_embeds.shape[0]
        assert out.user_embeds.shape == (batch_size, model.vector_size)
        assert out.logits.ndim == 2 and out.logits.shape[0] == batch_size

    # --------------------------------------------------------------------------------- scoring interface

    def test_scoring_interface(self):
        model = self.make_model()
        assert isinstance(model, ScoringModel)
        n, dim = self.num_items, model.vector_size
        with torch.no_grad():
            items = model.encode_items(**self.get_item_inputs(model.config, n))  # (N, D)
            assert items.shape == (n, dim)
            histories = torch.tensor([[0, 1, 2], [3, 4, 0]])
            mask = torch.tensor([[True, True, True], [True, True, False]])
            users = model.encode_users(items[histories], mask, **self.get_user_inputs(2))  # (B, D)
            assert users.shape == (2, dim)
            # A masked (padded) history slot has no effect on the user vector.
            padded = model.encode_users(
                items[torch.tensor([[0, 1, 2, 5]])], torch.tensor([[True, True, True, False]]), **self.get_user_inputs(1)
            )
            torch.testing.assert_close(padded, users[:1], rtol=0, atol=1e-6)
            # Per-user candidates (B, C, D) and candidates shared by all (C, D) score alike.
            per_user = model.score(users, items[None, 3:].expand(2, -1, -1))  # (B, C)
            shared = model.score(users, items[3:])  # (B, C)
            assert per_user.shape == shared.shape == (2, n - 3)
            torch.testing.assert_close(per_user, shared, rtol=1e-5, atol=1e-5)

    def test_score_impressions_uses_the_models_own_scores(self):
        """The routine that evaluation and serving share gives the model's `score` of its own vectors."""
        model = self.make_model().train()  # the routine must switch to eval mode and back
        with torch.no_grad():
            vectors = model.eval().encode_items(**self.get_item_inputs(model.config, self.num_items))  # (N, D)
            user = model.encode_users(vectors[None, [5, 6]], **self.get_user_inputs(1))
            expected = model.score(user, vectors[None, [0, 1, 2]])[0].numpy()
        model.train()
        user_inputs = {name: value.tolist() for name, value in self.get_user_inputs(2).items()}
        scores = score_impressions(model, vectors, [[5, 6], [1]], [[0, 1, 2], [4]], user_inputs=user_inputs)
        assert model.training
        assert [s.shape for s in scores] == [(3,), (1,)]
        torch.testing.assert_close(torch.from_numpy(scores[0]), torch.from_numpy(expected), rtol=1e-5, atol=1e-5)
