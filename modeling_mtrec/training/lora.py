"""LoRA adapters on MTRec's news encoder, through `peft` (the optional extra ``lora``: ``pip install .[lora]``).

Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022: a frozen weight W gets a trainable
update (alpha / r) B A of rank r. Both public MTRec reproductions (RecSys Challenge 2024, EB-NeRD) fine-tune BERT
this way (r 8-16 on query/value), because full fine-tuning did not fit their GPU budget.

What trains: the LoRA matrices of the news encoder's BERT (`target_modules` of each layer above
`config.freeze_encoder_layers`); the user encoder and the category/NER heads train fully (peft's
`modules_to_save`). `MTRecTrainer` takes the parameters with ``requires_grad`` for its per-task gradients, so the
gradient surgery's shared parameters are then the LoRA matrices: the only encoder weights both tasks reach.

A saved LoRA folder (`save_lora_model`, or `Trainer.save_model` + the MTRec config, as `train_mtrec.py` writes it)
holds ``adapter_config.json`` and ``adapter_model.safetensors`` (the LoRA matrices, the user encoder and the heads:
small) and ``config.json`` (the MTRec config). The frozen BERT weights are NOT in it: they come from the base
recorded as the adapter's ``base_model_name_or_path`` (the BERT checkpoint, or the MTRec folder fine-tuned). Load it:

    from modeling_mtrec.training.lora import load_lora_model
    model = load_lora_model("outputs/mtrec-lora")  # a peft.PeftModel around MTRecModel; base=... to point elsewhere

For serving and the Hub, merge the adapter into the weights: a plain MTRec folder (`AutoModel.from_pretrained`,
remote code) that needs no `peft`, whose vectors equal the adapter model's within float rounding:

    python -m modeling_mtrec.training.lora merge --adapter outputs/mtrec-lora --output outputs/mtrec-merged
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
from collections.abc import Sequence

import torch
from transformers import BertModel

from ..models.mtrec.configuration_mtrec import MTRecConfig
from ..models.mtrec.modeling_mtrec import MTRecModel

__all__ = ["DEFAULT_TARGET_MODULES", "apply_lora", "load_lora_model", "merge_lora", "save_lora_model"]

DEFAULT_TARGET_MODULES = ("query", "value")  # LoRA paper Sec. 7.1; the MTRec reproductions' choice
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def _peft():
    try:
        import peft
    except ImportError as error:
        raise ImportError("LoRA needs `peft`: pip install 'modeling_mtrec[lora]' (or pip install peft)") from error
    return peft


def _base(model):
    """The MTRecModel under a PeftModel (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def apply_lora(
    model: MTRecModel,
    *,
    r: int = 8,
    alpha: float = 16,
    dropout: float = 0.1,
    target_modules: Sequence[str] = DEFAULT_TARGET_MODULES,
    base_model_name_or_path: str | None = None,
):
    """Wraps `model` in a `peft.PeftModel`: LoRA on `target_modules` (BERT module names: ``query``, ``key``,
    ``value``, ``dense``) of the news encoder's layers above `config.freeze_encoder_layers`; the user encoder and
    the heads train fully; every other weight is frozen.

    `base_model_name_or_path`: where `load_lora_model` finds the frozen weights again (the BERT checkpoint, or the
    MTRec folder fine-tuned); recorded in ``adapter_config.json``.
    """
    peft = _peft()
    if not isinstance(r, int) or r < 1:
        raise ValueError(f"lora r must be a positive integer, got {r!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"lora dropout must be in [0, 1), got {dropout}")
    targets = [t.strip() for t in target_modules if t.strip()]
    if not targets or not all(re.fullmatch(r"\w+", t) for t in targets):
        raise ValueError(f"lora target_modules must be BERT module names (query, key, value, dense), got {target_modules!r}")
    first, total = model.config.freeze_encoder_layers, model.config.encoder_config.num_hidden_layers
    if first >= total:
        raise ValueError(f"freeze_encoder_layers={first} freezes all {total} layers: LoRA would have nothing to adapt")
    # One regex (peft matches it whole against module names): the named modules of the unfrozen layers only, so the
    # frozen layers' cached states stay valid and nothing outside the news encoder gets an adapter.
    pattern = (
        rf"news_encoder\.encoder\.layer\.({'|'.join(map(str, range(first, total)))})\.(.*\.)?({'|'.join(targets)})"
    )
    heads = [name for name in ("user_encoder", "category_head", "ner_head") if getattr(model, name) is not None]
    config = peft.LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=pattern, modules_to_save=heads, bias="none"
    )
    peft_model = peft.get_peft_model(model, config)
    peft_model.peft_config["default"].base_model_name_or_path = base_model_name_or_path
    return peft_model


def save_lora_model(model, folder: str | os.PathLike) -> None:
    """The adapter (LoRA matrices, user encoder, heads) and the MTRec ``config.json``; no frozen weights."""
    model.save_pretrained(folder)
    _base(model).config.save_pretrained(folder)


def load_lora_model(folder: str | os.PathLike, base: str | os.PathLike | None = None):
    """A `peft.PeftModel` around `MTRecModel` from a folder of `save_lora_model`.

    The frozen weights come from `base` (default: the adapter's ``base_model_name_or_path``): an MTRec folder, or a
    BERT checkpoint whose weights become the news encoder (the user encoder and heads come from the adapter).
    """
    peft = _peft()
    folder = os.fspath(folder)
    if base is None:
        with open(os.path.join(folder, "adapter_config.json")) as f:
            base = json.load(f).get("base_model_name_or_path")
        if not base:
            raise ValueError(f"{folder}/adapter_config.json names no base model: pass base= (the BERT checkpoint)")
    config = MTRecConfig.from_pretrained(folder)
    base = os.fspath(base)
    base_config = os.path.join(base, "config.json")
    is_mtrec = os.path.isfile(base_config) and json.load(open(base_config)).get("model_type") == MTRecConfig.model_type
    if is_mtrec:
        model = MTRecModel.from_pretrained(base, config=config)
    else:
        model = MTRecModel(config)
        encoder = BertModel.from_pretrained(base, add_pooling_layer=False, dtype=torch.float32)
        model.news_encoder.load_state_dict(encoder.state_dict())
    return peft.PeftModel.from_pretrained(model, folder)


def merge_lora(adapter: str | os.PathLike, output: str | os.PathLike, base: str | os.PathLike | None = None) -> MTRecModel:
    """Writes the adapter model with B A merged into W: a plain MTRec folder (config, weights, remote code, and the
    tokenizer when the adapter folder holds one) that loads without `peft`. Returns the merged model."""
    merged = load_lora_model(adapter, base).merge_and_unload()  # MTRecModel; modules_to_save become the trained heads
    merged.save_pretrained(output)
    for name in _TOKENIZER_FILES:
        if os.path.isfile(os.path.join(adapter, name)):
            shutil.copy(os.path.join(adapter, name), os.path.join(output, name))
    return merged


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m modeling_mtrec.training.lora", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    merge = commands.add_parser("merge", help="write a plain MTRec folder with the adapter merged into the weights")
    merge.add_argument("--adapter", required=True, help="folder of save_lora_model / train_mtrec.py --lora_r")
    merge.add_argument("--output", required=True, help="folder to write")
    merge.add_argument("--base", default=None, help="frozen weights (default: the adapter's base_model_name_or_path)")
    args = parser.parse_args(argv)
    merge_lora(args.adapter, args.output, args.base)
    print(f"merged {args.adapter} into {args.output}")


if __name__ == "__main__":
    main()
