"""Unit tests of the grader's parts that need no worker process: finding submissions, reading notebooks,
probing LSTM gate roles, fitting temperatures, and the README's points tables."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from common.cli import run_cli
from grading.__main__ import main
from grading.checks_text import FIT_TOLERANCE, fitted_temperature
from grading.lstm_roles import probe_roles
from grading.questions import QUESTIONS
from grading.submission import copy_sources, find_submissions, notebook_code

README = Path(__file__).resolve().parents[1] / "grading" / "README.md"


def _parts(folder: Path) -> Path:
    for part in ("part1", "part2", "part3"):
        (folder / part).mkdir(parents=True)
    (folder / "part3" / "networks.py").write_text("")
    return folder


def test_submission_found_directly_under_one_subfolder_or_as_a_folder_of_many(tmp_path):
    direct = _parts(tmp_path / "direct")
    nested = _parts(tmp_path / "nested" / "Assignment2").parent
    many = tmp_path / "many"
    for name in ("alice", "bob"):
        _parts(many / name / "assignment_2")
    found = find_submissions([direct, nested, many])
    assert [(s.path.name, s.root.name, s.layout) for s in found] == [
        ("direct", "direct", "template"),
        ("nested", "Assignment2", "template"),
        ("alice", "assignment_2", "template"),
        ("bob", "assignment_2", "template"),
    ]


def test_repository_layout_is_recognised():
    [submission] = find_submissions([Path(__file__).resolve().parents[1]])
    assert submission.layout == "repo"


def test_folder_without_parts_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "empty" / "notes").mkdir(parents=True)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: main([str(tmp_path / "empty")]))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        f"error: no part1/, part2/ or part3/ folder in {tmp_path / 'empty'} or its subfolders; give the folder "
        "that holds them (or a folder of such submissions)"
    )


def test_copy_keeps_sources_and_leaves_data_and_checkpoints(tmp_path):
    root = _parts(tmp_path / "submission")
    (root / "part2" / "model.py").write_text("x = 1\n")
    (root / "part1" / "data").mkdir()
    (root / "part1" / "data" / "loader.py").write_text("")
    (root / "part1" / "best.pt").write_bytes(b"0" * 100)
    copied = copy_sources(root, tmp_path / "copy")
    assert sorted(p.relative_to(copied).as_posix() for p in copied.rglob("*") if p.is_file()) == [
        "part2/model.py",
        "part3/networks.py",
    ]


def _notebook(path: Path, cells: list[str]) -> Path:
    path.write_text(json.dumps({"cells": [{"cell_type": "code", "source": c} for c in cells]}))
    return path


def test_notebook_keeps_imports_and_definitions_and_skips_broken_cells(tmp_path):
    path = _notebook(
        tmp_path / "CNN.ipynb",
        [
            "%matplotlib inline\nimport numpy as np\nx = np.zeros(3)\nprint(x)\ndef f(a):\n    return a + 1\n",
            "def g(:\n    pass\n",
            "<<<<<<< HEAD\ndef h():\n    return 1\n=======\ndef h():\n    return 2\n>>>>>>> branch\n",
            "class K:\n    pass\nK()\n",
        ],
    )
    code = notebook_code(path)
    kept = [[type(node).__name__ for node in module.body] for _, module, _ in code.cells]
    assert kept == [["Import", "FunctionDef"], ["ClassDef"]]
    assert code.notes == [
        f"{tmp_path.name}/CNN.ipynb cell 2 has a syntax error (line 1: invalid syntax); skipped",
        f"{tmp_path.name}/CNN.ipynb cell 3 has merge-conflict markers; skipped",
    ]


class TorchLSTM(nn.Module):
    """torch's nn.LSTM behind the template's interface: gate order (i, f, g, o) and two bias vectors."""

    def __init__(self, hidden: int, inputs: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(inputs, hidden)

    def forward(self, embeds):
        return self.lstm(embeds)[0]


def test_gate_roles_are_found_in_any_layout_with_two_biases():
    torch.manual_seed(0)
    role_map = probe_roles(TorchLSTM(4, 2), num_inputs=2, hidden=4)
    assert role_map.problem == ""
    assert len(role_map.roles) == 4 * (2 * 4 + 4 * 4 + 2 * 4)
    forget_biases = {
        str(s)
        for unit in range(4)
        for s in role_map.scalars_of(
            next(r for r in role_map.roles.values() if r.gate == "f" and r.kind == "bias" and r.unit == unit)
        )
    }
    assert forget_biases == {f"lstm.bias_{kind}_l0[{4 + unit}]" for kind in ("ih", "hh") for unit in range(4)}


class TransposedLSTM(nn.Module):
    """Equations 8-13 with one stacked, transposed weight per input, gates in the order (o, g, i, f)."""

    def __init__(self, hidden: int, inputs: int, squash_g=torch.tanh) -> None:
        super().__init__()
        self.w_x, self.w_h = (
            nn.Parameter(torch.randn(inputs, 4 * hidden)),
            nn.Parameter(torch.randn(hidden, 4 * hidden)),
        )
        self.b = nn.Parameter(torch.randn(4 * hidden))
        self.hidden, self.squash_g = hidden, squash_g

    def forward(self, embeds):
        h = c = embeds.new_zeros(embeds.shape[1], self.hidden)
        outputs = []
        for x in embeds:
            o, g, i, f = (x @ self.w_x + h @ self.w_h + self.b).chunk(4, dim=1)
            c = self.squash_g(g) * torch.sigmoid(i) + c * torch.sigmoid(f)
            h = torch.tanh(c) * torch.sigmoid(o)
            outputs.append(h)
        return torch.stack(outputs)


def test_gate_roles_of_a_transposed_stacked_layout_and_a_sigmoid_candidate_gate():
    role_map = probe_roles(TransposedLSTM(3, 2), num_inputs=2, hidden=3)
    assert role_map.problem == "" and len(role_map.roles) == 4 * (2 * 3 + 3 * 3 + 3)
    assert {str(s) for s in role_map.scalars_of(next(r for r in role_map.roles.values() if str(r) == "b_f[0]"))} == {
        "b[9]"
    }
    assert "is g squashed with tanh" in probe_roles(TransposedLSTM(3, 2, torch.sigmoid), 2, 3).problem


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_fitted_temperature_recovers_the_sampling_temperature(temperature):
    generator = torch.Generator().manual_seed(0)
    logits = 2 * torch.randn(5000, 10, generator=generator)
    drawn = torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1, generator=generator).squeeze(1)
    assert abs(torch.tensor(fitted_temperature(logits, drawn) / temperature).log()) < FIT_TOLERANCE / 2
    ignored = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator).squeeze(1)
    assert abs(torch.tensor(fitted_temperature(logits, ignored) / temperature).log()) > 3 * FIT_TOLERANCE


def test_readme_tables_give_every_check_its_points():
    """grading/README.md has one table per question, in order, listing each check with its points."""
    text = README.read_text()
    tables, current = [], None
    for line in text.splitlines():
        row = re.match(r"^\| `([a-z_.0-9]+)` \| ([0-9.]+) \|", line)
        if row and current is None:
            current = {}
            tables.append(current)
        if row:
            current[row.group(1)] = float(row.group(2))
        elif not line.startswith("|"):
            current = None
    assert tables == [{c.name: c.points for c in q.checks} for q in QUESTIONS]
    for q in QUESTIONS:
        assert re.search(rf"^\| {re.escape(q.id.replace('(', ' ('))} \| .* \| {q.points:g} \|$", text, re.MULTILINE)
