"""training_curves.png from a Trainer's log history: the panels each model's logs fill, nothing for no logs."""

from __future__ import annotations

import math

import pytest

from modeling_mtrec.training.curves import CURVES, plot_training_curves, save_training_curves


def _history(keys: tuple[str, ...], steps: int = 6) -> list[dict]:
    rows = [{"step": s, "epoch": s / steps, **{k: 1.0 / (s + i + 1) for i, k in enumerate(keys)}} for s in range(1, steps + 1)]
    rows.insert(3, {"step": 3, "eval_loss": 0.5, "eval_auc": 0.6})  # evaluation logs are skipped
    rows.append({"step": steps, "train_runtime": 1.0, "train_loss": 0.3})  # the closing summary too
    return rows


@pytest.mark.parametrize(
    ("model_type", "keys", "panels"),
    [
        ("mtrec", ("loss", "main_loss", "category_loss", "ner_loss", "grad_cosine", "conflict_rate"), 3),
        ("two_tower_ssl", ("loss", "main_loss", "ssl_loss"), 1),
        ("mtrec_foundation", ("loss", "ctr_loss", "relevance_loss", "regularizer_loss", "grad_cosine", "conflict_rate"), 3),
        ("mtrec", ("loss", "main_loss"), 1),  # auxiliary tasks off, no surgery: only what was logged
        ("unknown", ("loss",), 1),
    ],
)
def test_curves_plot_what_each_model_logs(tmp_path, model_type, keys, panels):
    history = _history(keys)
    figure = plot_training_curves(history, model_type)
    assert len(figure.axes) == panels
    lines = {line.get_label(): line for axis in figure.axes for line in axis.get_lines()}
    expected = [label for _, group in CURVES.get(model_type, (("", (("loss", "total"),)),)) for key, label in group
                if key in keys]
    assert sorted(lines) == sorted(expected)
    first = next(iter(lines.values()))
    assert list(first.get_xdata()) == [1, 2, 3, 4, 5, 6]  # optimizer steps, no evaluation row
    path = save_training_curves(history, tmp_path / "out", model_type)
    assert path == tmp_path / "out" / "training_curves.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_training_logs_no_picture(tmp_path):
    assert save_training_curves([{"step": 2, "train_runtime": 1.0, "train_loss": 0.3}], tmp_path, "mtrec") is None
    assert save_training_curves([], tmp_path, "mtrec") is None
    assert not (tmp_path / "training_curves.png").exists()


def test_curve_values_are_the_logged_ones():
    history = _history(("main_loss", "grad_cosine"))
    figure = plot_training_curves(history, "mtrec")
    cosine = figure.axes[1].get_lines()[0]
    assert all(math.isclose(y, 1.0 / (x + 2)) for x, y in zip(cosine.get_xdata(), cosine.get_ydata()))
