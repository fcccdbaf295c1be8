"""The grader (python -m grading) on our implementation in both layouts, on mutants and on misbehaving submissions.

Submissions in the course template's layout are built at test time from
../shared/course_template and the snippets in tests/grading_fixtures/. Each
grading runs real worker processes, so the tests grade only the questions they
are about.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from grading_fixtures.builder import TEMPLATE, add_notebook_cell, build_submission

from grading.__main__ import main
from grading.questions import QUESTIONS, all_checks, question
from grading.runner import Limits, grade_all
from grading.student import WORKER_FILES
from grading.submission import find_submissions

REPO_ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not TEMPLATE.is_dir(), reason=f"course template {TEMPLATE} not found")
DEFAULT = Limits()


def grade_one(folder: Path, questions: list[str], limits: Limits = DEFAULT):
    [submission] = find_submissions([folder])
    [result] = grade_all([submission], questions, limits)
    return result


def lost_checks(result) -> dict[str, str]:
    """``{check id: message}`` of every check that did not earn its points."""
    return {c.id: c.message for q in result.questions for c in q.checks if c.earned < c.points}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """Our implementation in the template's layout, under an assignment2/ subfolder as students hand it in."""
    return build_submission(tmp_path_factory.mktemp("reference") / "assignment2").parent


def test_template_layout_of_our_implementation_scores_full_marks(reference, tmp_path, capsys):
    out, results = tmp_path / "grades.csv", tmp_path / "grades.json"
    main([str(reference), "--out", str(out), "--json", str(results)])
    printed = capsys.readouterr().out
    assert "53 / 53" in printed
    [row] = list(csv.DictReader(out.open()))
    assert {q.id: float(row[q.id]) for q in QUESTIONS} == {q.id: q.points for q in QUESTIONS}
    [graded] = json.loads(results.read_text())["submissions"]
    assert graded["layout"] == "template" and graded["root"].endswith("assignment2")
    failed = {c["id"]: c["message"] for q in graded["questions"] for c in q["checks"] if not c["passed"]}
    assert failed == {}
    assert len([c for q in graded["questions"] for c in q["checks"]]) == len(all_checks())


def test_repository_layout_scores_full_marks():
    result = grade_one(REPO_ROOT, [q.id for q in QUESTIONS])
    assert result.layout == "repo"
    assert lost_checks(result) == {}
    assert result.earned == result.points == 53


def test_unfilled_template_scores_zero_on_every_question(tmp_path):
    result = grade_one(build_submission(tmp_path / "unfilled", filled=()), [q.id for q in QUESTIONS])
    assert {q.id: q.earned for q in result.questions} == {q.id: 0 for q in QUESTIONS}


@dataclass(frozen=True)
class Mutant:
    """One realistic bug planted in our template-shaped implementation."""

    name: str
    file: str
    edits: list[tuple[str, str]]
    questions: list[str]
    lost: set[str]  # ids of the checks that must fail
    symptom: str  # a phrase the failure message of the first lost check must contain


MUTANTS = [
    Mutant(
        "conv forward permutes output positions (keeps their sum)",
        "part1/CNN.ipynb",
        [
            (
                "out = _correlate(zero_padding(X, padding), W, stride)",
                "out = _correlate(zero_padding(X, padding), W, stride)[:, :, ::-1]",
            )
        ],
        ["1.1"],
        {"1.1/conv2d.basic", "1.1/conv2d.padding", "1.1/conv2d.stride", "1.1/conv2d.shapes", "1.1/conv2d.unchanged"},
        "wrong values, max error",
    ),
    Mutant(
        "backward filter assumes square outputs",
        "part1/CNN.ipynb",
        [("    OH, OW = out_grad.shape[2:]\n    windows", "    OH = OW = out_grad.shape[2]\n    windows")],
        ["1.1"],
        {"1.1/backward_filter.stride", "1.1/backward_filter.shapes"},
        "out_grad (2, 2, 4, 7)",
    ),
    Mutant(
        "padding by slicing p:-p breaks at padding 0",
        "part1/CNN.ipynb",
        [("zero_pad[:, :, ph : ph + IH, pw : pw + IW] = X", "zero_pad[:, :, ph:-ph, pw:-pw] = X")],
        ["1.1"],
        {"1.1/zero_padding.zero"},
        "padding (0, 0)) raised ValueError",
    ),
    Mutant(
        "pool_back ignores the stride",
        "part1/CNN.ipynb",
        [("oh * s", "oh"), ("ow * s", "ow")],
        ["1.1"],
        {"1.1/pool_back.basic", "1.1/pool_back.stride", "1.1/pool_back.ties", "1.1/pool_back.unchanged"},
        "f 2, s 2",
    ),
    Mutant(
        "pool_back returns zeros",
        "part1/CNN.ipynb",
        [("    return dX_pool", "    return np.zeros_like(dX_pool)")],
        ["1.1"],
        {"1.1/pool_back.basic", "1.1/pool_back.stride", "1.1/pool_back.ties", "1.1/pool_back.unchanged"},
        "wrong values",
    ),
    Mutant(
        "pool_back shifts X in place",
        "part1/CNN.ipynb",
        [("    dX_pool = np.zeros(X.shape)", "    dX_pool = np.zeros(X.shape)\n    X -= X.max()")],
        ["1.1"],
        {"1.1/pool_back.unchanged"},
        "modified its input X in place",
    ),
    Mutant(
        "learning-rate scheduler stepped after every batch",
        "part1/main_cnn.py",
        [
            (
                "            optimizer.step()\n        scheduler.step()",
                "            optimizer.step()\n            scheduler.step()",
            )
        ],
        ["1.2(a)"],
        {"1.2(a)/train_model.schedule"},
        "after every batch",
    ),
    Mutant(
        "LSTM state reset at every step",
        "part2/model.py",
        [
            (
                "        for t in range(T):\n",
                "        for t in range(T):\n            h, c = embeds.new_zeros(B, H), embeds.new_zeros(B, H)\n",
            )
        ],
        ["2.3"],
        {"2.3/state_carry", "2.3/equations"},
        "not carried",
    ),
    Mutant(
        "sigmoid on the modulation gate g",
        "part2/model.py",
        [("g = torch.tanh(gates[:, 3 * H :])", "g = torch.sigmoid(gates[:, 3 * H :])")],
        ["2.3"],
        {"2.3/equations"},
        "is g squashed with tanh",
    ),
    Mutant(
        "no +1 on the forget-gate bias",
        "part2/model.py",
        [("            self.bias[self.hidden_dim : 2 * self.hidden_dim] += 1.0\n", "")],
        ["2.3"],
        {"2.3/forget_bias"},
        "forget gate's bias should start near +1",
    ),
    Mutant(
        "forward returns softmax probabilities",
        "part2/model.py",
        [
            (
                "return self.output(self.lstm(self.embedding(x)))",
                "return torch.softmax(self.output(self.lstm(self.embedding(x))), dim=-1)",
            )
        ],
        ["2.4(a)", "2.4(c)"],
        {"2.4(a)/logits"},
        "forward returns probabilities",
    ),
    Mutant(
        "sampling ignores the temperature",
        "part2/model.py",
        [("torch.softmax(next_logits / temperature, dim=-1)", "torch.softmax(next_logits, dim=-1)")],
        ["2.4(c)"],
        {"2.4(c)/temperature_low", "2.4(c)/temperature_high"},
        "the temperature is ignored",
    ),
    Mutant(
        "GNN reads the first atom of each molecule instead of pooling",
        "part3/networks.py",
        [
            (
                "geom_nn.global_add_pool(h, batch_idx)",
                "h[torch.cat([batch_idx.new_zeros(1), (batch_idx[1:] != batch_idx[:-1]).nonzero().flatten() + 1])]",
            )
        ],
        ["3.6(d)"],
        {"3.6(d)/gnn.add_pool", "3.6(d)/gnn.permutation"},
        "does not sum over the atoms",
    ),
    Mutant(
        "evaluate_model averages batch means",
        "part3/train.py",
        [(".item() * molecules.num_graphs", ".item()"), ("count += molecules.num_graphs", "count += 1")],
        ["3.6(b)", "3.6(d)"],
        {"3.6(b)/evaluate_model.average"},
        "averages the batch losses",
    ),
]


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_mutant_loses_exactly_the_checks_of_its_bug(mutant, tmp_path):
    """Only the listed checks fail (a function wrong on every input also loses its 'unchanged' check, which counts
    only with a passing value check), the question loses exactly their points, and the message names the symptom."""
    files = tuple(dict.fromkeys(f for q in mutant.questions for f in WORKER_FILES[question(q).worker]))
    folder = build_submission(tmp_path / "submission", {mutant.file: mutant.edits}, filled=files)
    result = grade_one(folder, mutant.questions)
    lost = lost_checks(result)
    assert set(lost) == mutant.lost, lost
    checks = all_checks()
    for q in result.questions:
        assert q.earned == q.points - sum(checks[c].points for c in mutant.lost if c.startswith(q.id + "/"))
    first = next(c for c in checks if c in mutant.lost)
    assert mutant.symptom in lost[first]


def test_hangs_and_crashes_cost_only_their_checks(tmp_path):
    """Endless loops (stopped by the CPU-time alarm, or killed from outside when they swallow it), a function
    that sleeps forever (killed when idle too long) and os._exit each fail only their function's checks.

    Limits are CPU time and idle time, so the test does not depend on how busy the machine is.
    """
    folder = build_submission(
        tmp_path / "submission",
        {
            "part1/CNN.ipynb": [
                ("    ph, pw = padding\n", "    import time\n\n    time.sleep(3600)\n"),
                ("out = _correlate(zero_padding(X, padding), W, stride)", "import os; os._exit(3)"),
                (
                    "    windows = sliding_window_view(X, (f, f), axis=(2, 3))[:, :, ::s, ::s]",
                    "    while True:\n        pass",
                ),
            ],
            "part2/model.py": [
                (
                    "        T, B, _ = embeds.shape\n",
                    "        T, B, _ = embeds.shape\n        while True:\n            try:\n"
                    "                sum(range(1000))\n            except BaseException:\n                pass\n",
                )
            ],
        },
        filled=("part1/CNN.ipynb", "part2/model.py"),
    )
    limits = Limits(time_factor=0.3, grace_seconds=2.0, idle_factor=1.0, idle_extra_seconds=10.0)
    result = grade_one(folder, ["1.1", "2.3"], limits)
    lost = lost_checks(result)
    functions = ("zero_padding", "conv2d", "pool_forward")
    broken = {c for c in all_checks() if c.startswith(tuple(f"1.1/{f}." for f in functions))}
    lstm_forward = {c.id for c in question("2.3").checks if c.group == "lstm.forward"}
    assert set(lost) == broken | lstm_forward | {"2.3/no_builtin"}
    assert lost["1.1/zero_padding.values"].startswith("did nothing for ")
    assert lost["1.1/zero_padding.zero"].startswith("not run: zero_padding.values did nothing for ")
    assert "exited with code 3" in lost["1.1/conv2d.basic"]
    assert lost["1.1/pool_forward.basic"].startswith("did not finish within 3 s of CPU time")
    assert lost["1.1/pool_forward.stride"].startswith("not run: pool_forward.basic did not finish")
    assert lost["2.3/shape"].startswith("did not finish within 9 s of CPU time")
    assert lost["2.3/causal"].startswith("not run: shape did not finish")
    assert [q.earned for q in result.questions] == [6.0, 1.0]


def test_import_error_costs_only_the_checks_needing_that_file(tmp_path):
    folder = build_submission(
        tmp_path / "submission",
        {
            "part3/train.py": [("def compute_loss", "import sys\nsys.exit('not finished')\n\n\ndef compute_loss")],
        },
        filled=("part3/networks.py", "part3/train.py"),
    )
    result = grade_one(folder, ["3.6(b)", "3.6(d)"])
    lost = lost_checks(result)
    needs_train = {
        "3.6(b)/compute_loss.mlp",
        "3.6(b)/evaluate_model.average",
        "3.6(d)/compute_loss.gnn",
        "3.6(d)/evaluate_model.permute",
    }
    assert set(lost) == needs_train
    assert all(
        m.startswith("part3/train.py could not be imported: called sys.exit('not finished') (part3/train.py:")
        for m in lost.values()
    )
    assert [q.earned for q in result.questions] == [5.0, 6.0]


def test_broken_notebook_cells_are_skipped_and_the_functions_still_graded(tmp_path):
    folder = build_submission(tmp_path / "submission", filled=("part1/CNN.ipynb",))
    notebook = folder / "part1" / "CNN.ipynb"
    add_notebook_cell(notebook, "for i in range(3)\n    print(i)\n")
    add_notebook_cell(notebook, "<<<<<<< HEAD\nx = 1\n=======\nx = 2\n>>>>>>> theirs\n")
    add_notebook_cell(notebook, "%matplotlib inline\nimport not_an_installed_module\nprint(undefined_name)\n")
    result = grade_one(folder, ["1.1"])
    assert lost_checks(result) == {}
    notes = " | ".join(result.notes)
    assert "has a syntax error (line 1: expected ':'); skipped" in notes
    assert "has merge-conflict markers; skipped" in notes
    assert "No module named 'not_an_installed_module'" in notes
