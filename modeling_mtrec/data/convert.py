"""Convert any supported corpus into the package's own tables, as Parquet (or JSON Lines).

    python -m modeling_mtrec.data.convert --data_format ebnerd --input ebnerd_small --output ebnerd_small_tables
    python -m modeling_mtrec.data.convert --data_format xmind --input xMIND/fin/xMINDsmall_train \\
        --mind_dir MINDsmall_train --output xmind_fin/train
    python -m modeling_mtrec.data.convert --data_format adressa --input one_week --output adressa_one_week

`--input` is a split folder (converted into `--output`), or a folder of split folders (``ebnerd_small`` holding
``train`` and ``validation``: each is converted into ``<output>/<split>``). An Adressa folder becomes
``<output>/train`` and ``<output>/dev`` (the impression rule of `modeling_mtrec.data.adressa`). Each split folder gets
``news.parquet`` and ``behaviors.parquet`` (`write_tables`), which `read_split(..., data_format="tables")` reads back
unchanged. The output also gets ``conversion_report.json`` (per split: rows, the problems counted, which auxiliary
labels the corpus gives) and a ``README.md`` whose front matter declares the two tables as the ``news`` and
``behaviors`` configurations of a Hub dataset repository, so the folder can be uploaded as it is
(``huggingface-cli upload --repo-type dataset <user>/<name> <output>``). Check the corpus' license before uploading
it: MIND, EB-NeRD and Adressa may not be redistributed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

from .formats import DATA_FORMATS, detect_format, label_report, read_split
from .stats import LoadStats
from .tables import write_tables

logger = logging.getLogger(__name__)

__all__ = ["convert", "main"]

def _splits(input_dir: Path, data_format: str) -> list[tuple[str | None, Path]]:
    """``[(split name or None, folder)]``: `input_dir` itself when it is a split folder of `data_format`, else its
    subfolders that are."""
    if _try_detect(input_dir) == data_format:
        return [(None, input_dir)]
    if not input_dir.is_dir():
        raise FileNotFoundError(f"{input_dir}: not a folder")
    subs = sorted(path for path in input_dir.iterdir() if path.is_dir())
    folders = [(sub.name, sub) for sub in subs if _try_detect(sub) == data_format]
    if not folders:
        raise FileNotFoundError(f"{input_dir}: neither a {data_format} split folder nor a folder of them")
    return folders


def convert(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    data_format: str | None = None,
    *,
    file_format: str = "parquet",
    lenient: bool = False,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Convert a corpus (see the module docstring) and return the conversion report written beside it.

    Args:
        input_dir: a split folder or a folder of split folders (an Adressa folder of day files).
        output_dir: where the tables go (created).
        data_format: one of `DATA_FORMATS`; recognised from the files when None.
        file_format: ``"parquet"`` or ``"jsonl"``.
        lenient: skip and count bad rows instead of raising.
        options: `read_split`'s format options (``mind_dir``; Adressa's ``history_days``, ``dev_days``,
            ``num_negatives``, ``seed``).
    """
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    options = dict(options or {})
    if data_format is None:
        data_format = _try_detect(input_dir)
        if data_format is None:  # a folder of split folders: recognised from the first split folder found
            subs = sorted(path for path in input_dir.iterdir() if path.is_dir()) if input_dir.is_dir() else []
            data_format = next(filter(None, map(_try_detect, subs)), None) or detect_format(input_dir)
    if data_format not in DATA_FORMATS:
        raise ValueError(f"unknown data_format {data_format!r}; known: {DATA_FORMATS}")
    if data_format == "adressa":
        jobs = [(split, input_dir, {**options, "split": split}) for split in ("train", "dev")]
    else:
        jobs = [(name, folder, options) for name, folder in _splits(input_dir, data_format)]
    report: dict[str, Any] = {"data_format": data_format, "input": os.fspath(input_dir), "splits": {}}
    for name, folder, split_options in jobs:
        stats = LoadStats()
        news, behaviors = read_split(folder, data_format, lenient=lenient, stats=stats, **split_options)
        target = output_dir if name is None else output_dir / name
        write_tables(news, behaviors, target, file_format=file_format)
        stats.log(logger, f"convert {folder}")
        report["splits"][name or "."] = {
            "source": os.fspath(folder),
            "news": len(news),
            "impressions": len(behaviors),
            "problems": stats.as_dict(),
            "labels": label_report(news, data_format),
        }
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "conversion_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (output_dir / "README.md").write_text(_dataset_card(report, file_format))
    return report


def _try_detect(folder: Path) -> str | None:
    try:
        return detect_format(folder)
    except (ValueError, FileNotFoundError):
        return None


def _dataset_card(report: dict[str, Any], file_format: str) -> str:
    """A Hub dataset card whose front matter declares the ``news`` and ``behaviors`` tables of every split."""
    lines = ["---", "configs:"]
    for table in ("news", "behaviors"):
        lines += [f"- config_name: {table}", "  data_files:"]
        for split in report["splits"]:
            prefix = "" if split == "." else f"{split}/"
            lines += [f"  - split: {'train' if split == '.' else split}", f"    path: {prefix}{table}.{file_format}"]
    lines += ["---", "", f"Converted from {report['data_format']} by `python -m modeling_mtrec.data.convert`.",
              "The tables are the package's own format (docs/corpora/own_tables.md); `conversion_report.json` lists",
              "what was counted while converting. Check the source corpus' license before publishing this folder.", ""]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m modeling_mtrec.data.convert",
        description="Convert a news-recommendation corpus (MIND, xMIND, EB-NeRD, Adressa, own tables) into the "
        "package's news and behaviors tables, as Parquet, e.g. to push as a Hub dataset repository.",
    )
    parser.add_argument("--input", required=True, help="a split folder, or a folder of split folders")
    parser.add_argument("--output", required=True, help="where the tables go (created)")
    parser.add_argument("--data_format", choices=DATA_FORMATS, default=None, help="default: recognised from the files")
    parser.add_argument("--file_format", choices=("parquet", "jsonl"), default="parquet")
    parser.add_argument("--lenient", action="store_true", help="skip and count bad rows instead of stopping")
    parser.add_argument("--mind_dir", default=None, help="xMIND: MIND's split folder (default: <input>/mind)")
    parser.add_argument("--history_days", type=int, default=5, help="Adressa: days that only build histories")
    parser.add_argument("--dev_days", type=int, default=1, help="Adressa: last days that make the dev split")
    parser.add_argument("--num_negatives", type=int, default=4, help="Adressa: negatives per impression")
    parser.add_argument("--seed", type=int, default=0, help="Adressa: seed of the negative sampling")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    data_format = args.data_format
    options: dict[str, Any] = {}
    if data_format == "xmind" and args.mind_dir:
        options["mind_dir"] = args.mind_dir
    if data_format == "adressa":
        options.update(history_days=args.history_days, dev_days=args.dev_days, num_negatives=args.num_negatives,
                       seed=args.seed)  # fmt: skip
    report = convert(args.input, args.output, data_format, file_format=args.file_format, lenient=args.lenient,
                     options=options)  # fmt: skip
    for split, entry in report["splits"].items():
        print(f"{split}: {entry['news']} news, {entry['impressions']} impressions; problems {entry['problems']}; "
              f"labels {entry['labels']}")  # fmt: skip
    print(f"wrote {args.output}")
    return report


if __name__ == "__main__":
    main()
