"""Build template-shaped submissions at test time: the course template with our snippets (or mutants) filled in.

The template is read from ``../shared/course_template`` (never copied into the
repository). Each snippet file here holds the definitions a student writes in
one template file; a definition replaces the template's definition of the same
name, and the snippet's other statements (imports, helpers) go after the
template file's imports. For the notebook, each function goes into the code
cell that defines it, the helpers into the first such cell.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import stat
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent
TEMPLATE = Path(os.environ.get("COURSE_TEMPLATE", FIXTURES.parents[2] / "shared" / "course_template"))
SNIPPETS = {
    "part1/CNN.ipynb": "cnn_cells.py",
    "part1/main_cnn.py": "main_cnn_functions.py",
    "part2/model.py": "part2_model.py",
    "part3/networks.py": "part3_networks.py",
    "part3/train.py": "part3_train_functions.py",
}
_DEFINITIONS = (ast.FunctionDef, ast.ClassDef)


def snippet(label: str, edits: list[tuple[str, str]] = ()) -> str:
    """The snippet text for a template file, with ``(old, new)`` replacements (every occurrence; at least one)."""
    text = (FIXTURES / SNIPPETS[label]).read_text()
    for old, new in edits:
        if old not in text:
            raise ValueError(f"edit {old!r} does not occur in {SNIPPETS[label]}")
        text = text.replace(old, new)
    return text


def _segments(source: str) -> tuple[dict[str, tuple[int, int]], list[tuple[int, int]], int]:
    """Line ranges (0-based, end exclusive) of top-level definitions by name, of other statements, last import line."""
    tree = ast.parse(source)
    definitions, others, last_import = {}, [], 0
    for node in tree.body:
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1
        if isinstance(node, _DEFINITIONS):
            definitions[node.name] = (start, node.end_lineno)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            last_import = node.end_lineno
            others.append((start, node.end_lineno))
        elif not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):  # skip the docstring
            others.append((start, node.end_lineno))
    return definitions, others, last_import


def _text(lines: list[str], span: tuple[int, int]) -> str:
    return "".join(lines[span[0] : span[1]])


def fill_module(path: Path, code: str) -> None:
    """Replace the definitions of ``path`` by those of ``code``; put the rest of ``code`` after its imports."""
    source = path.read_text()
    lines, code_lines = source.splitlines(True), code.splitlines(True)
    targets, _, last_import = _segments(source)
    definitions, others, _ = _segments(code)
    replacements = [
        (targets[name], _text(code_lines, span) + "\n") for name, span in definitions.items() if name in targets
    ]
    extra = [_text(code_lines, span) for span in others]
    extra += [_text(code_lines, span) + "\n" for name, span in definitions.items() if name not in targets]
    replacements.append(((last_import, last_import), "\n" + "".join(extra) + "\n"))
    for (start, end), text in sorted(replacements, key=lambda item: item[0][0], reverse=True):
        lines[start:end] = [text]
    path.write_text("".join(lines))


def fill_notebook(path: Path, code: str) -> None:
    """Put each function of ``code`` into the notebook cell that defines it; imports and helpers into the first one."""
    notebook = json.loads(path.read_text())
    code_lines = code.splitlines(True)
    definitions, others, _ = _segments(code)
    preamble = "".join(_text(code_lines, span) for span in others)
    cells = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    placed, graded_names = [], set()
    for cell in cells:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        try:
            names = [n.name for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)]
        except SyntaxError:
            continue
        graded = [n for n in names if n in definitions]
        if graded:
            text = "".join(_text(code_lines, definitions[n]) + "\n" for n in graded)
            cell["source"] = text
            placed.append(cell)
            graded_names.update(graded)
    helpers = [name for name in definitions if name not in graded_names]
    placed[0]["source"] = (
        preamble + "".join(_text(code_lines, definitions[n]) + "\n" for n in helpers) + placed[0]["source"]
    )
    path.write_text(json.dumps(notebook, indent=1))


def add_notebook_cell(path: Path, source: str, position: int | None = None) -> None:
    """Insert a code cell (e.g. a broken one) into the notebook."""
    notebook = json.loads(path.read_text())
    cell = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}
    notebook["cells"].insert(len(notebook["cells"]) if position is None else position, cell)
    path.write_text(json.dumps(notebook, indent=1))


def build_submission(
    destination: Path, edits: dict[str, list[tuple[str, str]]] | None = None, filled: tuple[str, ...] = tuple(SNIPPETS)
) -> Path:
    """The template at ``destination`` with the files ``filled`` completed by our snippets (plus ``edits``)."""
    shutil.copytree(TEMPLATE, destination)
    for file in destination.rglob("*"):
        file.chmod(file.stat().st_mode | stat.S_IWUSR)
    for label in filled:
        code = snippet(label, (edits or {}).get(label, []))
        (fill_notebook if label.endswith(".ipynb") else fill_module)(destination / label, code)
    return destination
