"""Every ```python block of README.md and docs/*.md runs as written.

Each block runs in its own Python process, in a fresh empty temporary folder, with the Hugging Face Hub switched
off (``HF_HUB_OFFLINE=1``): nothing is substituted, nothing is prepared for it, so a block must build what it uses
(a synthetic corpus, a tiny model, the package's offline encoder). A block that fails is a failing test named by
its page and the line of its opening fence. Shell commands go in ```bash blocks, which are not run. A block that
trains a model (calls ``.train()``) is marked ``slow``, as the suite's other training runs are.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
# Fence languages a page may use; a Python block under another name (```py, ```Python) would escape the test.
FENCE_LANGUAGES = {"python", "bash", "text"}
FENCE = re.compile(r"^```(\S*)\n(.*?)^```[ \t]*$", re.S | re.M)
README_LIMIT_BYTES = 15_000  # a landing page; the rest lives in docs/


def fenced_blocks(page: Path) -> list[tuple[int, str, str]]:
    """(line of the opening fence, language, code) for every fenced block of `page`."""
    text = page.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(1), m.group(2)) for m in FENCE.finditer(text)]


PYTHON_BLOCKS = [
    pytest.param(
        page,
        line,
        code,
        id=f"{page.relative_to(REPO_ROOT)}:{line}",
        marks=[pytest.mark.slow]
        if ".train()" in code
        else [],  # a block that trains runs with the slow tests
    )
    for page in PAGES
    for line, language, code in fenced_blocks(page)
    if language == "python"
]


def test_pages_have_python_blocks():
    assert (REPO_ROOT / "docs").is_dir()
    pages = {page for page, _, _ in (param.values for param in PYTHON_BLOCKS)}
    assert REPO_ROOT / "README.md" in pages
    assert len(PYTHON_BLOCKS) >= 4


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO_ROOT)))
def test_fences_are_closed_and_named(page):
    lines = page.read_text(encoding="utf-8").splitlines()
    indented = [
        number for number, line in enumerate(lines, 1) if line.lstrip().startswith("```") and line[0] != "`"
    ]
    assert not indented, (
        f"{page.name}: indented fences at lines {indented} (the test reads fences at column 0)"
    )
    fences = [line for line in lines if line.startswith("```")]
    assert len(fences) % 2 == 0, f"{page.name}: an unclosed ``` fence"
    for line, language, _ in fenced_blocks(page):
        assert language in FENCE_LANGUAGES, (
            f"{page.name}:{line}: fence language {language!r} (use one of {FENCE_LANGUAGES})"
        )


def test_readme_is_a_landing_page():
    size = (REPO_ROOT / "README.md").stat().st_size
    assert size <= README_LIMIT_BYTES, f"README.md is {size} bytes; move detail into docs/"


def _commands(text: str) -> list[str]:
    """The command lines of a shell text: neither blank nor comments, with trailing comments removed."""
    lines = (line.split(" #", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _readme_block(marker: str) -> str:
    """The code of the one fenced block between ``<!-- marker -->`` and ``<!-- /marker -->`` in README.md."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"<!-- {marker} -->\n```bash\n(.*?)^```\n<!-- /{marker} -->", text, re.S | re.M)
    assert match, f"README.md: no ```bash block between <!-- {marker} --> and <!-- /{marker} -->"
    return match.group(1)


# .ci/run's shell plumbing around the commands (strict mode, working folder, the root-or-sudo switch).
_CI_PLUMBING = ("set ", "cd ", "if ", "fi", "SUDO=")


def test_readme_install_and_test_commands_are_what_ci_runs():
    ci = [
        line.replace("$SUDO ", "sudo ")  # .ci/run drops sudo when it runs as root
        for line in _commands((REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8"))
        if not line.startswith(_CI_PLUMBING)
    ]
    readme = _commands(_readme_block("install")) + _commands(_readme_block("test"))
    assert readme == ci, f"README.md's install and test commands {readme} differ from .ci/run's {ci}"


@pytest.mark.parametrize(("page", "line", "code"), PYTHON_BLOCKS)
def test_python_block_runs(page, line, code, tmp_path):
    env = dict(
        os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1"
    )
    # The package under test is this checkout's, whatever is installed.
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    where = f"{page.relative_to(REPO_ROOT)}:{line}"
    # Blank lines up to the fence, so that the traceback's line numbers are the page's.
    script = tmp_path / f"{page.stem}_md.py"
    script.write_text("\n" * line + code, encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run(
        [sys.executable, str(script)], cwd=work, env=env, capture_output=True, text=True, timeout=900
    )
    if result.returncode != 0:
        pytest.fail(
            f"the python block at {where} failed (exit {result.returncode}; traceback lines are the page's):\n"
            f"{result.stderr[-4000:]}"
        )


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO_ROOT)))
def test_relative_links_resolve(page):
    text = page.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://", "#")):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{page.name}: the link {target} points to nothing"
