"""Loading a submission's code inside a grading worker, for either layout (see :mod:`grading.submission`).

Files are named by their template label (``part2/model.py``) in both layouts;
:data:`FILES` says what each label is imported as. Every import happens at
worker start-up (so that a hang there is timed as start-up); a failure is
remembered and re-raised as :class:`CheckFailed` by each check that needs the
file, so it costs only those checks.
"""

from __future__ import annotations

import importlib
import linecache
import sys
from pathlib import Path
from typing import Any

from grading.failures import CheckFailed, describe_error
from grading.submission import notebook_code

CNN_FUNCTIONS = (
    "zero_padding",
    "convolution2D",
    "convolution2D_backward_filter",
    "convolution2D_backward_input",
    "pool_forward",
    "pool_back",
)
NOTEBOOK = "part1/CNN.ipynb"

# label -> (module name in the template layout, module name in the repository layout)
FILES = {
    NOTEBOOK: (None, "part1"),
    "part1/main_cnn.py": ("main_cnn", "part1.train"),
    "part2/model.py": ("model", "part2.model"),
    "part3/networks.py": ("networks", "part3.model"),
    "part3/train.py": ("train", "part3.train"),
}
WORKER_FILES = {
    "cnn": (NOTEBOOK,),
    "training": ("part1/main_cnn.py",),
    "rnn": ("part2/model.py",),
    "graph": ("part3/networks.py", "part3/train.py"),
}


class StudentCode:
    """The student's modules and notebook functions of one worker, loaded from the copy at ``root``."""

    def __init__(self, root: Path, layout: str) -> None:
        self.root = root
        self.layout = layout
        self.loaded: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self.notes: list[str] = []

    def shown_name(self, label: str) -> str:
        """How a file is named in messages: its path (template) or its module (repository)."""
        return label if self.layout == "template" else FILES[label][1]

    def load(self, label: str) -> None:
        """Import one file, remembering a failure (any exception, ``sys.exit`` included) instead of raising."""
        if label in self.loaded or label in self.errors:
            return
        template_module, repo_module = FILES[label]
        if self.layout == "template":
            if not (self.root / label).is_file():
                self.errors[label] = f"{label} is missing from the submission"
                return
            folder = str(self.root / label.split("/")[0])
        else:
            folder = str(self.root)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        try:
            if label == NOTEBOOK and self.layout == "template":
                self.loaded[label] = self._exec_notebook(self.root / label)
            else:
                self.loaded[label] = importlib.import_module(
                    template_module if self.layout == "template" else repo_module
                )
        except BaseException as error:  # student code may sys.exit() or raise anything
            self.errors[label] = f"{self.shown_name(label)} could not be imported: {describe_error(error, [self.root])}"

    def _exec_notebook(self, path: Path) -> dict[str, Any]:
        """Run the notebook's imports and definitions statement by statement; a failing one is noted and skipped."""
        try:
            code = notebook_code(path)
        except ValueError as error:
            raise CheckFailed(str(error)) from None
        self.notes += code.notes
        namespace: dict[str, Any] = {"__name__": "student_notebook"}
        for label, module, source in code.cells:
            # Registered so that tracebacks and inspect.getsource see the cell's code.
            linecache.cache[label] = (len(source), None, source.splitlines(True), label)
            for node in module.body:
                try:
                    exec(compile(type(module)(body=[node], type_ignores=[]), label, "exec"), namespace)
                except Exception as error:
                    self.notes.append(f"{label}, line {node.lineno}: {describe_error(error, [self.root])}; skipped")
        return namespace

    def get(self, label: str) -> Any:
        """The module (or notebook namespace) of ``label``, or :class:`CheckFailed` with the import error."""
        self.load(label)
        if label in self.errors:
            raise CheckFailed(self.errors[label])
        return self.loaded[label]

    def attribute(self, label: str, name: str) -> Any:
        """``name`` defined in the file ``label``, or :class:`CheckFailed` saying it is missing."""
        module = self.get(label)
        if not hasattr(module, name):
            raise CheckFailed(f"{name} is not defined in {self.shown_name(label)}")
        return getattr(module, name)

    def cnn_namespace(self) -> dict[str, Any]:
        """The globals the six NumPy CNN functions see (the notebook's namespace, or ``part1``'s module)."""
        loaded = self.get(NOTEBOOK)
        if isinstance(loaded, dict):
            return loaded
        return {name: getattr(loaded, name) for name in CNN_FUNCTIONS if hasattr(loaded, name)}

    def cnn_function(self, name: str):
        """One of the six NumPy CNN functions, or :class:`CheckFailed` if none is defined."""
        function = self.cnn_namespace().get(name)
        if not callable(function):
            where = "any code cell of part1/CNN.ipynb" if self.layout == "template" else "part1"
            raise CheckFailed(f"{name} is not defined in {where}")
        return function
