"""`training_curves.png`: the task losses (and, for the models trained with gradient surgery, the cosine between
the main and auxiliary gradients and the share of conflicting steps) over the optimizer steps, from a Trainer's
`state.log_history`. Each recipe saves it into its output folder; the model card shows it.

    >>> save_training_curves(trainer.state.log_history, "outputs/mtrec", "mtrec")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["CURVES", "CURVES_FILE", "plot_training_curves", "save_training_curves"]

CURVES_FILE = "training_curves.png"

# Per model type: panels of (title, [(log key, label), ...]). The log keys are what each Trainer logs.
_SURGERY_PANELS = (
    ("Gradient cosine (main vs auxiliary)", (("grad_cosine", "cos(g_main, g_aux)"),)),
    ("Conflict rate (cosine < 0)", (("conflict_rate", "share of steps"),)),
)
CURVES: dict[str, tuple[tuple[str, tuple[tuple[str, str], ...]], ...]] = {
    "mtrec": (
        ("Task losses", (("main_loss", "main (click)"), ("category_loss", "category"), ("ner_loss", "NER"))),
        *_SURGERY_PANELS,
    ),
    "two_tower_ssl": (
        ("Task losses", (("main_loss", "retrieval (main)"), ("ssl_loss", "self-supervised"))),
    ),
    "mtrec_foundation": (
        ("Task losses", (("ctr_loss", "CTR"), ("relevance_loss", "relevance"), ("regularizer_loss", "regulariser"))),
        *_SURGERY_PANELS,
    ),
}
_DEFAULT = (("Training loss", (("loss", "total"),)),)


def _series(log_history: Sequence[Mapping], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of a key over the training logs (evaluation logs carry `eval_*` keys and are skipped)."""
    points = [(int(row["step"]), float(row[key])) for row in log_history if key in row and "step" in row]
    return [step for step, _ in points], [value for _, value in points]


def plot_training_curves(log_history: Sequence[Mapping], model_type: str | None = None):
    """A matplotlib figure with one panel per group of `CURVES[model_type]` that has logged values (the total loss
    for an unknown type); `None` when nothing was logged."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed (servers, CI)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = []
    for title, keys in CURVES.get(model_type or "", _DEFAULT):
        lines = [(label, *_series(log_history, key)) for key, label in keys]
        lines = [line for line in lines if line[1]]
        if lines:
            panels.append((title, lines))
    if not panels:
        return None
    figure, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 3.6), squeeze=False)
    for axis, (title, lines) in zip(axes[0], panels):
        for label, steps, values in lines:
            axis.plot(steps, values, marker="o" if len(steps) < 20 else None, markersize=3, label=label)
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("optimizer step")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        if len(lines) > 1:
            axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def save_training_curves(
    log_history: Sequence[Mapping], output_dir: str | os.PathLike[str], model_type: str | None = None
) -> Path | None:
    """Writes ``output_dir/training_curves.png`` (see `plot_training_curves`); returns its path, or `None` (and
    writes nothing) when the logs hold no training values, e.g. an evaluation-only run."""
    figure = plot_training_curves(log_history, model_type)
    if figure is None:
        return None
    import matplotlib.pyplot as plt

    path = Path(output_dir) / CURVES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
