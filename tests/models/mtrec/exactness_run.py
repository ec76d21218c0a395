"""One short MTRecTrainer run over pre-built batches, for the exactness tests (test_exactness.py).

Run in-process (`train(...)`) for the single-process references, and as a script under torchrun for the
2-process gloo run:

    python -m torch.distributed.run --nproc_per_node 2 tests/models/mtrec/exactness_run.py --output_dir OUT --mode mtrec

Every run starts from the same weights (seeded construction on CPU) and sees the same micro-batches in a fixed
order (`train_sampling_strategy="sequential"`); with N processes and per-device batch 1, process k takes
micro-batches k, k+N, k+2N, ... (accelerate's batch-sampler sharding). The optimizer is plain SGD: Adam divides by
the root of the squared gradient, which blows float rounding on near-zero gradients up to full-size updates, and
would hide whether the gradients themselves agree.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
from safetensors.torch import save_file

# As a script (under torchrun) the repository root must be importable for `tests.testing_utils`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
from transformers import BertConfig  # noqa: E402

from modeling_mtrec import MTRecModel, MTRecTrainer, MTRecTrainingArguments  # noqa: E402
from tests.testing_utils import concat_batches, random_batch, tiny_config  # noqa: E402

NUM_MICRO_BATCHES = 8  # 4 optimizer steps of 2 micro-batches (2 processes, or accumulation 2)


class ListDataset(torch.utils.data.Dataset):
    """Each item is a whole pre-built batch (unwrapped by `first`)."""

    def __init__(self, batches):
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, i):
        return self.batches[i]


def first(features):
    return features[0]


def micro_batches() -> list[dict[str, torch.Tensor]]:
    # Equal shapes and equal title lengths: every micro-batch has the same number of clicks, category labels and
    # NER tokens, so the mean of the micro-batch losses is the loss of their concatenation.
    return [random_batch(seed=100 + i, equal_lengths=True) for i in range(NUM_MICRO_BATCHES)]


def build_model() -> MTRecModel:
    torch.manual_seed(0)
    config = tiny_config(
        encoder_config=BertConfig(
            vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,  # the runs must compute the same function
        ),
        head_dropout=0.0,
    )
    return MTRecModel(config)


def train(
    output_dir: str,
    mode: str = "mtrec",
    *,
    concatenate: int = 1,
    gradient_accumulation_steps: int = 1,
    max_steps: int = 4,
    save_steps: int | None = None,
    resume_from_checkpoint: str | None = None,
    bf16: bool = False,
) -> MTRecTrainer:
    """Trains on `micro_batches()`, glued `concatenate` at a time into bigger batches; saves the final weights."""
    batches = micro_batches()
    if concatenate > 1:
        batches = [concat_batches(*batches[i : i + concatenate]) for i in range(0, len(batches), concatenate)]
    args = MTRecTrainingArguments(
        output_dir=output_dir, gradient_surgery=mode, aux_weight=0.3,
        per_device_train_batch_size=1, gradient_accumulation_steps=gradient_accumulation_steps,
        max_steps=max_steps, learning_rate=0.1, optim="sgd", lr_scheduler_type="constant", max_grad_norm=1.0,
        train_sampling_strategy="sequential", logging_steps=1, report_to=[], use_cpu=True, seed=0,
        save_strategy="steps" if save_steps else "no", save_steps=save_steps or 500, bf16=bf16,
        dataloader_num_workers=0,
    )
    trainer = MTRecTrainer(
        model=build_model(), args=args, train_dataset=ListDataset(batches), data_collator=first
    )
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    if trainer.is_world_process_zero():
        state = {name: p.detach().float().contiguous() for name, p in trainer.model.named_parameters()}
        save_file(state, os.path.join(output_dir, "final.safetensors"))
        with open(os.path.join(output_dir, "log_history.json"), "w") as f:
            json.dump(trainer.state.log_history, f)
        with open(os.path.join(output_dir, "setup.json"), "w") as f:
            json.dump(
                {
                    "distributed_type": trainer.accelerator.distributed_type.value,
                    "num_processes": trainer.accelerator.num_processes,
                },
                f,
            )
    return trainer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--mode", default="mtrec")
    args = parser.parse_args()
    train(args.output_dir, args.mode)


if __name__ == "__main__":
    main()
