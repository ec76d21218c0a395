"""Plots of the committed benchmark results that read better as a picture than as a table; nothing is re-run.

    PYTHONPATH=. python benchmarks/plot_results.py      # writes benchmarks/results/training_speed.png, main_job.png

- `training_speed.png` (from `results/training_speed.md`): the speed-up of each training option over the default
  (samples/s ratio; 6-layer speed run and 2-layer quality run), and dev AUC against optimizer steps (before
  training and after the quality run's steps, mean ± std over its seeds).
- `main_job.png` (from `results/main_job.json`): dev AUC of the main job before and after its training, per seed,
  beside the category-share baseline.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def markdown_tables(text: str) -> dict[str, list[dict[str, str]]]:
    """Each table of a results file as rows (column -> cell), keyed by the `##` heading above it."""
    tables: dict[str, list[dict[str, str]]] = {}
    heading, header = "", None
    for line in text.splitlines():
        if line.startswith("## "):
            heading, header = line[3:].strip(), None
        elif line.startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if header is None:
                header = cells
            elif not all(set(cell) <= set("-:") for cell in cells):
                tables.setdefault(heading, []).append(dict(zip(header, cells)))
        else:
            header = None
    return tables


def mean_std(cell: str) -> tuple[float, float]:
    """'0.5324 ± 0.0082' -> (0.5324, 0.0082); '2.61' -> (2.61, 0.0)."""
    parts = [float(part) for part in re.findall(r"-?\d+(?:\.\d+)?", cell)]
    return parts[0], parts[1] if len(parts) > 1 else 0.0


def _finish(figure, axis, output: Path) -> Path:
    """The legend and grid of `axis` (the figure's last panel), then the figure written to `output` and closed."""
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(output, dpi=110)
    plt.close(figure)
    return output


def plot_training_speed(path: Path, output: Path) -> Path:
    tables = markdown_tables(path.read_text(encoding="utf-8"))
    speed_heading = next(h for h in tables if h.startswith("1."))
    quality_heading = next(h for h in tables if h.startswith("2."))
    steps = int(re.search(r"(\d+) optimizer steps", quality_heading).group(1))
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))

    speed = tables[speed_heading]
    quality = [row for row in tables[quality_heading] if row["x default samples/s"]]
    variants = [row["variant"] for row in speed]
    width = 0.4
    for offset, rows, label in ((-width / 2, speed, "6 layers (speed run)"), (width / 2, quality, "2 layers (quality run)")):
        ratios = {row["variant"]: mean_std(row["x default samples/s"]) for row in rows}
        ys = [i + offset for i, v in enumerate(variants) if v in ratios]
        values = [ratios[v] for v in variants if v in ratios]
        left.barh(ys, [m for m, _ in values], height=width, xerr=[s for _, s in values], label=label)
    left.set_yticks(range(len(variants)), variants)
    left.invert_yaxis()
    left.axvline(1.0, color="gray", lw=0.8)
    left.set_xlabel("samples/s, × default")
    left.set_title("Training speed-up (CPU)", fontsize=10)
    left.legend(fontsize=8)

    before = next(row for row in tables[quality_heading] if row["variant"].startswith("before training"))
    start, start_std = mean_std(before["dev AUC"])
    for row in quality:
        end, end_std = mean_std(row["dev AUC"])
        right.errorbar([0, steps], [start, end], yerr=[start_std, end_std], marker="o", capsize=3, label=row["variant"])
    right.set_xlabel("optimizer step")
    right.set_ylabel("dev AUC")
    right.set_title(f"Dev AUC against steps (2 layers, {before['variant'].split('(')[0].strip()} = step 0)", fontsize=10)
    return _finish(figure, right, output)


def plot_main_job(path: Path, output: Path) -> Path:
    runs = json.loads(path.read_text(encoding="utf-8"))
    figure, axis = plt.subplots(figsize=(6, 4))
    for run in runs:
        rows = run["comparison"]
        (line,) = axis.plot([0, 1], [rows["untrained"]["auc"], rows["trained"]["auc"]], marker="o",
                            label=f"MTRec, seed {run['seed']}")
        axis.axhline(rows["category_share_baseline"]["auc"], color=line.get_color(), lw=0.8, ls="--")
    axis.plot([], [], color="gray", lw=0.8, ls="--", label="category-share baseline (same seed)")
    axis.set_xticks([0, 1], ["before training", "after one epoch"])
    axis.set_xlim(-0.3, 1.3)
    axis.set_ylabel("dev AUC")
    axis.set_title("Main job (train_mtrec.py): dev AUC", fontsize=10)
    return _finish(figure, axis, output)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    print(plot_training_speed(args.results / "training_speed.md", args.results / "training_speed.png"))
    print(plot_main_job(args.results / "main_job.json", args.results / "main_job.png"))


if __name__ == "__main__":
    main()
