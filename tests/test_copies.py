"""Every `# Copied from <dotted path>` block of the package equals its source, as transformers' `utils/check_copies.py`
checks: the modeling files stand alone as Hub remote code, so they copy code instead of importing it, and this
test keeps the copies from drifting.

Forms understood (an optional note in parentheses may end the comment):

    # Copied from modeling_mtrec.models.mtrec.modeling_mtrec.MTRecModel.save_pretrained
    # Copied from modeling_mtrec.models.mtrec.modeling_mtrec.MTRecModel with MTRec->TwoTower, mtrec->two_tower
    IGNORE_INDEX = -100  # Copied from modeling_mtrec.data.padding.IGNORE_INDEX

A comment on its own line covers the definition (class or function, decorators included) that starts on the next
line; its code must equal the source object's code (both dedented), after the `A->B` replacements. A comment at the
end of a statement covers that statement, compared as code (comments aside).
"""

from __future__ import annotations

import ast
import difflib
import textwrap
from pathlib import Path

import pytest

import modeling_mtrec

MARKER = "# Copied from "


def _statements(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.stmt):
            yield node


def _first_line(node: ast.stmt) -> int:
    decorators = getattr(node, "decorator_list", None) or []
    return min([node.lineno, *(d.lineno for d in decorators)])


def _code(lines: list[str], node: ast.stmt) -> str:
    return textwrap.dedent("\n".join(lines[_first_line(node) - 1 : node.end_lineno]))


def _named(body: list[ast.stmt], name: str) -> ast.stmt | None:
    for node in body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return node
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return node
    return None


def _find_source(root: Path, dotted: str) -> tuple[list[str], ast.stmt]:
    """The lines of the module holding `dotted` (a module path, then names inside it) and the object's node."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        path = root.joinpath(*parts[:cut]).with_suffix(".py")
        if path.is_file():
            break
    else:
        raise LookupError(f"no module of {dotted} under {root}")
    text = path.read_text(encoding="utf-8")
    node, body = None, ast.parse(text).body
    for name in parts[cut:]:
        node = _named(body, name)
        if node is None:
            raise LookupError(f"{dotted}: {path} has no {name!r} there")
        body = getattr(node, "body", [])
    return text.splitlines(), node


def _parse_comment(comment: str) -> tuple[str, list[tuple[str, str]]]:
    """'X with A->B, C->D (note)' -> ('X', [('A', 'B'), ('C', 'D')])."""
    comment = comment.split(" (", 1)[0].strip()
    target, _, rest = comment.partition(" ")
    replacements = []
    if rest.startswith("with "):
        for pair in rest[len("with ") :].split(","):
            old, arrow, new = pair.strip().partition("->")
            if not arrow or not old:
                raise ValueError(f"bad replacement {pair.strip()!r} in '# Copied from {comment}'")
            replacements.append((old, new))
    elif rest:
        raise ValueError(f"cannot read '# Copied from {comment}'")
    return target, replacements


def check_copies(root: Path, package: str) -> tuple[int, list[str]]:
    """(number of copies checked, problems) for every `# Copied from` comment in the `.py` files of `root/package`."""
    checked, problems = 0, []
    for path in sorted((root / package).rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if MARKER not in text:
            continue
        lines = text.splitlines()
        statements = list(_statements(ast.parse(text)))
        for number, line in enumerate(lines, start=1):
            if MARKER not in line:
                continue
            where = f"{path.relative_to(root)}:{number}"
            code_part, _, comment = line.partition(MARKER)
            try:
                target, replacements = _parse_comment(comment)
                source_lines, source = _find_source(root, target)
            except (LookupError, ValueError) as error:
                problems.append(f"{where}: {error}")
                continue
            checked += 1
            inline = bool(code_part.strip())
            start = number if inline else number + 1
            observed = next((node for node in statements if _first_line(node) == start), None)
            if observed is None:
                problems.append(f"{where}: no definition follows '# Copied from {target}'")
                continue
            expected = _code(source_lines, source)
            for old, new in replacements:
                expected = expected.replace(old, new)
            if inline:  # one statement with the comment on its line: compare the code, comments aside
                same = ast.dump(ast.parse(expected)) == ast.dump(ast.parse(_code(lines, observed)))
                diff = f"{expected!r} != {_code(lines, observed)!r}"
            else:
                got = _code(lines, observed)
                same = got == expected
                diff = "\n".join(difflib.unified_diff(expected.splitlines(), got.splitlines(), target, where, lineterm=""))
            if not same:
                problems.append(f"{where}: the copy of {target} has drifted from its source:\n{diff}")
    return checked, problems


PACKAGE_DIR = Path(modeling_mtrec.__file__).resolve().parent


def test_every_copy_equals_its_source():
    checked, problems = check_copies(PACKAGE_DIR.parent, PACKAGE_DIR.name)
    assert not problems, "\n\n".join(problems)
    assert checked >= 4  # the modeling files' copies are found (a broken marker search would pass vacuously)


SOURCE = '''\
LIMIT = 3  # the largest value


class MTRecBox:
    @classmethod
    def make(cls, mtrec_value):
        """A box."""
        return cls(mtrec_value + LIMIT)  # shifted
'''


def _write_package(root: Path, copy: str) -> None:
    (root / "pkg").mkdir()
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "source.py").write_text(SOURCE)
    (root / "pkg" / "copy.py").write_text(copy)


@pytest.mark.parametrize(
    "copy",
    [
        "# Copied from pkg.source.MTRecBox (note)\n" + SOURCE.split("\n\n\n")[1],
        "# Copied from pkg.source.MTRecBox with MTRec->Other, mtrec->other\n"
        + SOURCE.split("\n\n\n")[1].replace("MTRec", "Other").replace("mtrec", "other"),
        "class Holder:\n    # Copied from pkg.source.MTRecBox.make\n    @classmethod\n    def make(cls, mtrec_value):\n"
        '        """A box."""\n        return cls(mtrec_value + LIMIT)  # shifted\n',
        "LIMIT = 3  # Copied from pkg.source.LIMIT\n",
    ],
)
def test_faithful_copies_pass(tmp_path, copy):
    _write_package(tmp_path, copy)
    assert check_copies(tmp_path, "pkg") == (1, [])


@pytest.mark.parametrize(
    "copy, message",
    [
        ("# Copied from pkg.source.MTRecBox\n" + SOURCE.split("\n\n\n")[1].replace("+ LIMIT", "- LIMIT"), "drifted"),
        ("# Copied from pkg.source.MTRecBox\n" + SOURCE.split("\n\n\n")[1].replace("# shifted", "# moved"), "drifted"),
        ("# Copied from pkg.source.MTRecBox with MTRec->Other\n" + SOURCE.split("\n\n\n")[1], "drifted"),
        ("LIMIT = 4  # Copied from pkg.source.LIMIT\n", "drifted"),
        ("# Copied from pkg.source.Missing\nclass Missing:\n    pass\n", "has no 'Missing'"),
        ("# Copied from pkg.source.MTRecBox\n\nx = 1\n", "no definition follows"),
    ],
)
def test_a_drifted_copy_is_detected(tmp_path, copy, message):
    _write_package(tmp_path, copy)
    _, problems = check_copies(tmp_path, "pkg")
    assert len(problems) == 1 and message in problems[0], problems
    assert "pkg/copy.py:" in problems[0]  # names the file and line of the copy
