"""Every Python block of the README runs as written.

The blocks run in a temporary folder that holds what the README's commands would have produced, from tiny models:
``outputs/mtrec`` (a saved MTRec with its tokenizer, as `train_mtrec.py` writes it) and ``outputs/two-tower``.
The one block that names ``bert-base-uncased`` (a Hub download) gets a tiny local BERT instead, and trains 2
steps instead of an epoch; nothing else is changed.
"""

from __future__ import annotations

import re

import pytest
import torch
from transformers import BertConfig

from modeling_mtrec import MTRecConfig, MTRecModel, TwoTowerModel
from tests.conftest import REPO_ROOT, tiny_tt_config

BLOCKS = re.findall(r"```python\n(.*?)```", (REPO_ROOT / "README.md").read_text(encoding="utf-8"), re.S)
# Offline, tiny stand-ins (README text -> test text).
SUBSTITUTES = {'"bert-base-uncased"': "TINY_ENCODER", "num_train_epochs=1": "max_steps=2"}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, tiny_encoder):
    """A folder with ``outputs/mtrec`` and ``outputs/two-tower``, as the recipes leave them."""
    root = tmp_path_factory.mktemp("readme")
    encoder_path, tokenizer = tiny_encoder
    torch.manual_seed(0)
    encoder = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=37)
    mtrec = MTRecModel(MTRecConfig(encoder_config=encoder, id2category={0: "sports", 1: "finance"}))
    mtrec.save_pretrained(root / "outputs" / "mtrec")
    tokenizer.save_pretrained(root / "outputs" / "mtrec")
    TwoTowerModel(tiny_tt_config()).save_pretrained(root / "outputs" / "two-tower")
    return root, encoder_path


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, outputs, monkeypatch, one_thread):
    root, encoder_path = outputs
    code = BLOCKS[index]
    for original, substitute in SUBSTITUTES.items():
        code = code.replace(original, substitute)
    monkeypatch.chdir(root)
    exec(compile(code, f"README.md python block {index}", "exec"), {"TINY_ENCODER": encoder_path, "__name__": "readme"})
