"""Finding a submission's files: its root folder, its layout, a private copy, the notebook's definitions.

Two layouts are supported:

- ``template``: the course template filled in (``part1/CNN.ipynb``,
  ``part1/main_cnn.py``, ``part2/model.py``, ``part3/networks.py``,
  ``part3/train.py``); each part folder is put on ``sys.path`` and its files are
  imported as top-level modules, as the template's own imports expect.
- ``repo``: this repository (packages ``part1``, ``part2``, ``part3``
  imported from the root).

The part folders sit in the submission folder itself or in its only subfolder
that has them (``assignment2/``, ``assignment_2/``, ``Assignment2/``, ...).
"""

from __future__ import annotations

import ast
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from common.runtime import UserError

PARTS = ("part1", "part2", "part3")
# Only source files are copied: data, checkpoints and results folders of a submission stay behind.
SOURCE_SUFFIXES = {".py", ".ipynb"}
MAX_SOURCE_BYTES = 5_000_000
SKIPPED_DIRS = {
    ".git",
    ".venv",
    "venv",
    "__pycache__",
    "data",
    "results",
    "checkpoints",
    "runs",
    "grading",
    "tests",
    "node_modules",
    "__MACOSX",
    ".ipynb_checkpoints",
    "lightning_logs",
    "wandb",
}
_CONFLICT_MARKER = re.compile(r"^(<<<<<<<|=======\s*$|>>>>>>>)", re.MULTILINE)
_NOTEBOOK_NODES = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


@dataclass
class Submission:
    """A submission folder as given (``path``) and where its part folders are (``root``)."""

    path: Path
    root: Path
    layout: str
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.path)


def _has_parts(folder: Path) -> bool:
    return any((folder / part).is_dir() for part in PARTS)


def _children(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))


def _submission_root(folder: Path) -> Path | None:
    """``folder`` if it holds part folders, else its only subfolder that does, else ``None``."""
    if _has_parts(folder):
        return folder
    with_parts = [child for child in _children(folder) if _has_parts(child)]
    return with_parts[0] if len(with_parts) == 1 else None


def detect_layout(root: Path) -> str:
    """``repo`` for this repository's packages, ``template`` for the course template's files."""
    is_package = (root / "part1" / "__init__.py").is_file() and (root / "part2" / "__init__.py").is_file()
    has_template_files = (root / "part1" / "main_cnn.py").is_file() or (root / "part3" / "networks.py").is_file()
    return "repo" if is_package and not has_template_files else "template"


def find_submissions(paths: list[str | Path]) -> list[Submission]:
    """Resolve command-line paths: each is a submission or a folder of submissions.

    Raises:
        UserError: a path does not exist or holds no part1/ part2/ part3/ folders at any accepted depth.
    """
    found: list[Submission] = []
    for given in paths:
        path = Path(given).expanduser()
        if not path.is_dir():
            raise UserError(f"{path} is not a folder; give a submission folder or a folder of submissions")
        root = _submission_root(path)
        if root is not None:
            found.append(Submission(path, root, detect_layout(root)))
            continue
        many = [(child, _submission_root(child)) for child in _children(path)]
        many = [(child, root) for child, root in many if root is not None]
        if not many:
            raise UserError(
                f"no part1/, part2/ or part3/ folder in {path} or its subfolders; "
                "give the folder that holds them (or a folder of such submissions)"
            )
        found += [Submission(child, root, detect_layout(root)) for child, root in many]
    return found


def copy_sources(root: Path, destination: Path) -> Path:
    """Copy the source files (``.py``, ``.ipynb``) under ``root`` into ``destination``; returns the copy's root.

    Only top-level part folders and Python packages are copied; data, results and
    checkpoints are left behind, so a submission's size does not matter.
    """
    destination.mkdir(parents=True, exist_ok=True)
    for top in _children(root):
        if top.name in SKIPPED_DIRS or not (top.name in PARTS or (top / "__init__.py").is_file()):
            continue
        for file in top.rglob("*"):
            relative = file.relative_to(root)
            if any(part in SKIPPED_DIRS for part in relative.parts[:-1]):
                continue
            if file.suffix in SOURCE_SUFFIXES and file.is_file() and file.stat().st_size <= MAX_SOURCE_BYTES:
                target = destination / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(file, target)
    return destination


# --------------------------------------------------------------------------- notebooks
@dataclass
class NotebookCode:
    """The imports and definitions of a notebook's code cells, as ``(label, module AST)`` per cell."""

    cells: list[tuple[str, ast.Module, str]]
    notes: list[str]


def _strip_magics(source: str) -> str:
    """Blank out IPython magics and shell escapes (``%matplotlib``, ``!pip``), keeping line numbers."""
    lines = source.split("\n")
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in lines)


def notebook_code(path: Path) -> NotebookCode:
    """Imports, functions and classes of every code cell of the notebook at ``path``, in cell order.

    Everything else (test code, prints, plots) is dropped. A cell with a syntax
    error or merge-conflict markers is skipped whole, with a note naming it.

    Raises:
        ValueError: the file is not a readable notebook.
    """
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
        cells = notebook["cells"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path.name} is not a readable notebook ({type(error).__name__})") from None
    kept, notes = [], []
    for number, cell in enumerate(cells, start=1):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        label = f"{path.parent.name}/{path.name} cell {number}"
        if _CONFLICT_MARKER.search(source):
            notes.append(f"{label} has merge-conflict markers; skipped")
            continue
        try:
            tree = ast.parse(_strip_magics(source), filename=label)
        except SyntaxError as error:
            notes.append(f"{label} has a syntax error (line {error.lineno}: {error.msg}); skipped")
            continue
        body = [node for node in tree.body if isinstance(node, _NOTEBOOK_NODES)]
        if body:
            kept.append((label, ast.Module(body=body, type_ignores=[]), source))
    return NotebookCode(kept, notes)
