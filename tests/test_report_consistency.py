"""The numbers quoted in REPORT.md, parsed from its text and recomputed, so a quoted number cannot drift.

Covers the written-maths sections 2.1, 2.2 and 3.1-3.5: the tables of 2.1 against the committed
``assets/part2/gradient_norms.json`` (which ``tests/test_report_math.py`` regenerates and compares), the
parameter counts of 2.2 against the models, the sizes and tolerances the report says its checks use against
the tests, and every test the report names against the test files.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
REPORT = (REPO_ROOT / "REPORT.md").read_text(encoding="utf-8")
GRADIENT_NORMS = json.loads((REPO_ROOT / "assets" / "part2" / "gradient_norms.json").read_text())
MATH_TESTS = REPO_ROOT / "tests" / "test_report_math.py"


def section(title: str) -> str:
    """The text of the report section whose heading starts with ``title`` (up to the next heading of that level)."""
    depth = len(title.split(" ")[0])
    match = re.search(rf"^{re.escape(title)}.*?$(.*?)(?=^#{{1,{depth}}} |\Z)", REPORT, flags=re.M | re.S)
    assert match, f"REPORT.md has no section {title!r}"
    return match.group(1)


def table_rows(text: str) -> dict[str, list[str]]:
    """Markdown table rows as ``{first cell: other cells}``."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def number(text: str) -> float:
    """``5{,}246{,}976`` / ``0.50`` / ``1.7e-16`` / ``−0.2`` as a float."""
    return float(text.replace("{,}", "").replace(",", "").replace("−", "-"))


def quoted(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match, f"REPORT.md no longer says {pattern!r}"
    return match.group(1)


def module_constants(path: Path) -> dict[str, object]:
    """Top-level ``NAME = literal`` and ``NAME = [n for n in OTHER if n >= k]`` assignments of a test file."""
    values: dict[str, object] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            try:
                values[name] = ast.literal_eval(node.value)
            except ValueError:
                try:  # a comprehension over earlier constants
                    values[name] = eval(compile(ast.Expression(node.value), str(path), "eval"), {}, dict(values))
                except NameError:  # refers to an import (e.g. torch.float64): not a size
                    pass
    return values


def parametrize_values(path: Path, test_name: str) -> dict[str, list]:
    """The ``@pytest.mark.parametrize`` argument lists of one test function, as literals."""
    constants = module_constants(path)
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef) and node.name == test_name:
            values = {}
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call) and getattr(decorator.func, "attr", "") == "parametrize":
                    names, argvalues = decorator.args
                    code = compile(ast.Expression(argvalues), str(path), "eval")
                    values[ast.literal_eval(names)] = list(eval(code, {"range": range}, dict(constants)))
            return values
    raise AssertionError(f"{path.name} has no test {test_name}")


WRITTEN_MATHS = "\n".join(
    section(title)
    for title in (
        "### 2.1",
        "### 2.2",
        "### 3.1",
        "### 3.2",
        "### 3.3",
        "### 3.4",
        "### 3.5",
    )
)


# ---------------------------------------------------------------- every named test exists


def test_every_test_the_written_sections_name_exists() -> None:
    defined = set()
    for path in (REPO_ROOT / "tests").glob("test_*.py"):
        defined |= {node.name for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.FunctionDef)}
    named = set(re.findall(r"`(test_\w+)`", WRITTEN_MATHS))
    assert len(named) > 30
    assert named <= defined, f"REPORT.md names tests that do not exist: {sorted(named - defined)}"


def test_phi_has_one_meaning_the_layer_of_equation_23() -> None:
    assert "\\varphi" not in WRITTEN_MATHS
    outside_3_3 = WRITTEN_MATHS.replace(section("### 3.3"), "")
    assert "\\phi" not in outside_3_3
    assert "\\phi(h_i, \\mathcal N_i) = w_{-1}\\, h_{i-1} + w_0\\, h_i + w_1\\, h_{i+1}" in section("### 3.3")


def test_every_module_the_written_sections_link_exists() -> None:
    for link in re.findall(r"\]\(((?:part|tests|assets)[^)#]*)\)", WRITTEN_MATHS):
        assert (REPO_ROOT / link).exists(), f"REPORT.md links to missing {link}"


# ---------------------------------------------------------------- 2.1 (a)


def test_gradient_check_table_matches_the_json() -> None:
    check = GRADIENT_NORMS["gradient_check_t3"]
    text = section("#### (a) The gradients for")
    sizes = check["sizes"]
    assert quoted(r"\$H = (\d+)\$ hidden units", text) == str(sizes["H"])
    assert quoted(r"\$D = (\d+)\$ inputs", text) == str(sizes["D"])
    assert quoted(r"\$K = (\d+)\$ classes", text) == str(sizes["K"])
    rows = table_rows(text)
    for label, key in (("random $h^{(0)}$", "random_h0"), ("$h^{(0)} = 0$", "zero_h0")):
        entry = check[key]
        expected = [
            f"{entry['max_abs_diff_W_hh']:.1e}",
            f"{entry['max_abs_diff_W_hh_delta_form']:.1e}",
            f"{entry['max_abs_grad_W_hh']:.2f}",
            ", ".join(f"{v:.2f}" for v in entry["term_norms_t1_t2_t3"]),
            f"{entry['max_abs_diff_W_ph']:.1e}",
        ]
        assert rows[label] == expected, label


def test_t3_test_description_matches_its_parametrisation() -> None:
    text = section("#### (a) The gradients for")
    grid = parametrize_values(MATH_TESTS, "test_autograd_equals_written_t3_expansion_and_its_delta_form")
    cases = len(grid["seed"]) * len(grid["zero_h0"])
    assert quoted(r"\((\d+) random cases: (?:\d+) seeds", text) == str(cases)
    assert quoted(r"random cases: (\d+) seeds", text) == str(len(grid["seed"]))
    assert grid["zero_h0"] == [False, True]
    other_t = parametrize_values(MATH_TESTS, "test_expanded_sum_holds_for_other_t")["t"]
    assert quoted(r"`test_expanded_sum_holds_for_other_t` \(\$t = ([\d, ]+)\$\)", text) == ", ".join(map(str, other_t))
    assert quoted(r"Tests \(float64, tolerance (\S+)\)", text) == "1e-12"


# ---------------------------------------------------------------- 2.1 (b)


def norms_table() -> tuple[list[str], dict[str, list[str]]]:
    rows = table_rows(section("#### (b) Many time steps"))
    return rows.pop("$\\rho(W_{hh})$"), rows


def test_norm_table_matches_the_json() -> None:
    radii, rows = norms_table()
    norms = GRADIENT_NORMS["jacobian_product_norms"]
    assert radii == list(norms["linear"]) == [str(r) for r in GRADIENT_NORMS["args"]["radii"]]
    for regime in ("linear", "tanh"):
        entries = [norms[regime][radius] for radius in radii]
        after = [number(cell) for cell in rows[f"{regime} regime: norm after 100 steps"]]
        assert after == [float(f"{e['norms'][-1]:.1e}") for e in entries], regime
        factors = rows[f"{regime} regime: per-step factor"]
        assert factors == [f"{e['per_step_factor']:.3f}" for e in entries], regime
    tanh_derivative = rows["tanh regime: mean $\\tanh'$ over the states"]
    assert tanh_derivative == [f"{norms['tanh'][r]['mean_tanh_derivative']:.2f}" for r in radii]


def test_norm_experiment_sizes_match_the_json() -> None:
    text = section("#### (b) Many time steps")
    args = GRADIENT_NORMS["args"]
    assert quoted(r"one Gaussian \$(\d+) \\times \d+\$ matrix", text) == str(args["hidden_dim"])
    assert quoted(r"entries of variance \$1/(\d+)\$", text) == str(args["hidden_dim"])
    assert args["input_scale"] == 1.0
    assert quoted(r"\$T = (\d+)\$\)", text) == str(args["num_steps"])
    assert all(
        len(e["norms"]) == args["num_steps"] for e in GRADIENT_NORMS["jacobian_product_norms"]["linear"].values()
    )


def test_linear_regime_prose_matches_the_json() -> None:
    text = section("#### (b) Many time steps")
    linear = GRADIENT_NORMS["jacobian_product_norms"]["linear"]
    ratios = [entry["per_step_factor"] / float(radius) for radius, entry in linear.items()]
    percent = float(quoted(r"equals the spectral radius to within (\d+\.\d+) %", text))
    worst = 100 * max(abs(ratio - 1) for ratio in ratios)
    assert worst <= percent < worst + 0.1, "the quoted tolerance must be the measured one, rounded up"
    # The test that checks it uses the same tolerance.
    assert module_constants(MATH_TESTS)["LINEAR_REGIME_TOLERANCE"] == pytest.approx(percent / 100)
    assert quoted(r"it is \$(\d+\.\d+)\\,\\rho\$ at every radius", text) == f"{ratios[0]:.3f}"
    assert max(ratios) - min(ratios) < 1e-9  # one matrix rescaled
    assert number(quoted(r"at \$\\rho = 1\$ the norm after 100 steps is (\d+\.\d+)", text)) == round(
        linear["1.0"]["norms"][-1], 1
    )


def test_tanh_regime_prose_matches_the_json() -> None:
    text = section("#### (b) Many time steps")
    tanh = GRADIENT_NORMS["jacobian_product_norms"]["tanh"]
    vanishing = [float(r) for r, e in tanh.items() if e["per_step_factor"] < 1]
    exploding = [float(r) for r, e in tanh.items() if e["per_step_factor"] > 1]
    assert number(quoted(r"vanishes up to \$\\rho = ([\d.]+)\$", text)) == max(vanishing)
    assert number(quoted(r"explodes only at \$\\rho = ([\d.]+)\$", text)) == min(exploding) == max(exploding)
    assert quoted(r"mean\s+\$\\tanh'\$ has dropped to (\d+\.\d+)", text) == f"{tanh['3.0']['mean_tanh_derivative']:.2f}"


# ---------------------------------------------------------------- 2.2 (b)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_parameter_counts_quoted_in_2_2_are_the_models(shared_data: Path) -> None:
    from argparse import Namespace

    from part2.dataset import read_text
    from part2.model import TextGenerationModel
    from part2.train import build_parser

    text = section("#### (b) Number of trainable parameters")
    parser = build_parser()
    hidden, embedding_size = parser.get_default("lstm_hidden_dim"), parser.get_default("embedding_size")
    vocabulary = len(set(read_text(shared_data / "books" / "book_EN_grimms_fairy_tails.txt")))
    assert number(quoted(r"\$N_\\text\{hidden\} = (\d+)\$", text)) == hidden
    assert number(quoted(r"embedding size \$(\d+)\$", text)) == embedding_size
    assert number(quoted(r"vocabulary of \$N_\\text\{output\} = (\d+)\$", text)) == vocabulary

    model = TextGenerationModel(
        Namespace(vocabulary_size=vocabulary, embedding_size=embedding_size, lstm_hidden_dim=hidden, lstm_num_layers=1)
    )
    embedding = sum(count(m) for m in model.modules() if isinstance(m, torch.nn.Embedding))
    output = sum(count(m) for m in model.modules() if isinstance(m, torch.nn.Linear))
    lstm = count(model) - embedding - output
    quoted_lstm = re.search(r"\$4 \\cdot (\d+) \\cdot (\d+) = ([\d{},]+)\$ parameters", text)
    assert quoted_lstm and number(quoted_lstm.group(1)) == hidden
    assert number(quoted_lstm.group(2)) == hidden + embedding_size + 1
    assert number(quoted_lstm.group(3)) == lstm
    quoted_output = re.search(r"\$(\d+) \\cdot (\d+) = ([\d{},]+)\$, in total \$([\d{},]+)\$", text)
    assert quoted_output and [number(g) for g in quoted_output.groups()] == [
        vocabulary,
        hidden + 1,
        output,
        lstm + output,
    ]
    assert number(quoted(r"\\times 256 = ([\d{},]+)\$", text)) == embedding == vocabulary * embedding_size


# ---------------------------------------------------------------- 3.2 and the sizes of the 3.x checks


def test_ring_adjacency_displayed_for_n_6_is_the_code() -> None:
    from part3.analysis.spectral import ring_adjacency

    matrix = quoted(r"(?s)A = \\begin\{pmatrix\}(.*?)\\end\{pmatrix\}", section("### 3.2"))
    rows = [[int(v) for v in row.split("&")] for row in matrix.strip().split("\\\\")]
    torch.testing.assert_close(torch.tensor(rows, dtype=torch.float64), ring_adjacency(6), rtol=0, atol=0)


def test_sizes_the_report_gives_for_the_3_x_checks_are_the_tests() -> None:
    constants = module_constants(MATH_TESTS)
    sizes = quoted(r"\$n \\in \\lbrace ([\d, ]+)\\rbrace\$", section("### 3.4"))
    assert [int(n) for n in sizes.split(",")] == constants["SIZES"]
    assert (
        parametrize_values(MATH_TESTS, "test_convolution_theorem_equation_24_in_the_assignment_notation")["n"]
        == (constants["SIZES"])
    )
    ring = quoted(r"`test_ring_adjacency` \(\$n = ([\d, ]+)\$", section("### 3.2"))
    assert [int(n) for n in ring.split(",")] == parametrize_values(MATH_TESTS, "test_ring_adjacency")["n"]
    assert parametrize_values(MATH_TESTS, "test_circulants_commute_with_the_shift_and_each_other")[
        "complex_valued"
    ] == [
        False,
        True,
    ]
