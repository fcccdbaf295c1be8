"""Hand-run mutation check: plant realistic one-line bugs, one at a time, and see whether the tests go red.

Usage (from the repository root; not collected by pytest, not run in CI)::

    python tests/mutation_check.py                  # every mutation, one at a time
    python tests/mutation_check.py --only gnn_mean_pool part2_no_grad_clipping
    python tests/mutation_check.py --list           # only check that every mutation still applies to HEAD
    python tests/mutation_check.py --jobs 2         # two mutations at a time (idle machine only)

Each mutation replaces one exact string, which must occur exactly once in its file at HEAD (after a
refactor, a mutation that no longer applies is reported by name and the script exits 1: update its
``old`` string). The mutated code runs in temporary ``git worktree``s of HEAD, never in the live checkout,
with only the test files that should catch the bug: ``python -m pytest -x -q -p no:cacheprovider <files>``.
A mutation is *caught* when those tests fail, *survived* when they pass. The tests are first run once
without any mutation (the baseline): a mutation whose tests already fail at HEAD proves nothing and is
reported as such. Exit code 0 (this is a report), 1 if some mutation could not be applied.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from queue import Queue

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TIMEOUT = 1800  # seconds per pytest run; generous because the check is often run on a busy machine
PYTEST_ARGS = ("-x", "-q", "-p", "no:cacheprovider")
# pytest exit codes: 0 all passed, 1 some failed, 2 interrupted (a collection error: the mutated code fails to import).
OUTCOMES = {0: "survived", 1: "caught", 2: "caught"}


@dataclass(frozen=True)
class Mutation:
    """One planted bug: ``old`` -> ``new`` in ``path`` (exactly one occurrence), and the tests that should catch it."""

    name: str
    path: str
    old: str
    new: str
    bug: str
    tests: tuple[str, ...]


def _m(name: str, path: str, old: str, new: str, bug: str, *tests: str) -> Mutation:
    return Mutation(name, path, old, new, bug, tuple(f"tests/{test}" for test in tests))


NUMPY_CNN = "part1/numpy_cnn/vectorised.py"
MUTATIONS: tuple[Mutation, ...] = (
    # ---------------------------------------------------------------- part 1: NumPy convolution and pooling
    _m("conv_stride_axes_swapped", NUMPY_CNN,
       "[:, :, ::sh, ::sw]  # (N, C, OH, OW, FH, FW) view", "[:, :, ::sw, ::sh]  # (N, C, OH, OW, FH, FW) view",
       "im2col takes the vertical stride along the width and vice versa", "test_part1_numpy_cnn.py"),
    _m("zero_padding_bottom_right_only", NUMPY_CNN,
       "padded[:, :, ph : ph + IH, pw : pw + IW] = X", "padded[:, :, :IH, :IW] = X",
       "zero padding all below and to the right (asymmetric)", "test_part1_numpy_cnn.py"),
    _m("conv_backward_input_unflipped", NUMPY_CNN,
       "transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]", "transpose(1, 0, 2, 3)",
       "input gradient correlates with the filters instead of the flipped filters", "test_part1_numpy_cnn.py"),
    _m("pool_back_ties_to_every_max", NUMPY_CNN,
       "if np.count_nonzero(is_max) != Y.size or np.isnan(Y).any():", "if np.isnan(Y).any():",
       "a tied window sends its gradient to every maximum, not the first", "test_part1_numpy_cnn.py"),
    _m("pool_back_pool_size_as_stride", NUMPY_CNN,
       "* IW + s * np.arange(OW)", "* IW + f * np.arange(OW)",
       "overlapping windows placed with the pool size instead of the stride", "test_part1_numpy_cnn.py"),
    # ---------------------------------------------------------------- part 1: data, corruptions, metrics, training
    _m("augment_vertical_flip", "part1/data.py",
       "xs = torch.where(flip.to(images.device)[:, None], xs.flip(1), xs)",
       "ys = torch.where(flip.to(images.device)[:, None], ys.flip(1), ys)",
       "augmentation mirrors top-bottom instead of left-right", "test_part1_data.py"),
    _m("augment_crop_scale_default", "part1/data.py",
       "random_resized_crop_params(n, size, (0.8, 1.0), (0.9, 1.1), generator)",
       "random_resized_crop_params(n, size, (0.08, 1.0), (0.9, 1.1), generator)",
       "RandomResizedCrop with torchvision's default scale (0.08, 1) instead of (0.8, 1)", "test_part1_data.py"),
    _m("corruption_after_normalisation", "part1/evaluate.py",
       "x = to_float(x)\n        if corruption is not None:\n            x = corruption(x, generator)\n"
       "        correct += (predict(model, normalize(x),",
       "x = normalize(to_float(x))\n        if corruption is not None:\n            x = corruption(x, generator)\n"
       "        correct += (predict(model, x,",
       "test-time corruption applied after normalisation instead of before", "test_part1_train.py"),
    _m("contrast_severities_reversed", "part1/corruptions.py",
       "CONTRAST_FACTOR = (0.75, 0.6, 0.5, 0.4, 0.3)", "CONTRAST_FACTOR = (0.3, 0.4, 0.5, 0.6, 0.75)",
       "contrast severities in reverse order (severity 1 strongest)", "test_part1_corruptions.py"),
    _m("ce_mean_of_ratios", "part1/analysis/metrics.py",
       "return _ratio(sum(errors), sum(baseline_errors))",
       "return sum(_ratio(e, b) for e, b in zip(errors, baseline_errors)) / len(errors)",
       "CE as the mean of per-severity ratios, not the ratio of sums", "test_part1_report.py"),
    _m("rce_baseline_clean_not_subtracted", "part1/analysis/metrics.py",
       "sum(e - baseline_clean_error for e in baseline_errors)", "sum(baseline_errors)",
       "RCE denominator without the baseline's clean error", "test_part1_report.py"),
    _m("lr_milestones_half_and_three_quarters", "part1/train.py",
       "(int(0.6 * epochs), int(0.9 * epochs))", "(int(0.5 * epochs), int(0.75 * epochs))",
       "lr drops at 50 % and 75 % of the epochs instead of 60 % and 90 %", "test_part1_train.py"),
    _m("part1_last_epoch_weights", "part1/train.py",
       "    model.load_state_dict(progress.best_state)\n", "",
       "fit returns the last epoch's weights, not the best validation ones", "test_part1_train.py"),
    _m("part1_resume_without_optimizer_state", "part1/train.py",
       '    optimizer.load_state_dict(state["optimizer"])\n', "",
       "resume restarts SGD momentum from zero", "test_part1_train.py"),
    # ---------------------------------------------------------------- part 2: LSTM, text model, palindromes
    _m("lstm_no_forget_bias", "part2/model.py",
       'self.gate_slice(self.bias, "f").add_(1.0)', 'self.gate_slice(self.bias, "f").add_(0.0)',
       "forget-gate bias not initialised +1", "test_part2_lstm.py"),
    _m("lstm_sigmoid_on_candidate", "part2/lstm_function.py",
       "        g.mul_(2.0).sub_(1.0)\n", "",
       "candidate g = sigmoid(2x), the rescaling to tanh(x) forgotten", "test_part2_lstm.py"),
    _m("lstm_backward_missing_tanh_derivative", "part2/lstm_function.py",
       "dc.addcmul_(df, o)", "dc.addcmul_(dh, o)",
       "backward: dh -> dc without the derivative of tanh(c_t)", "test_part2_lstm.py"),
    _m("lstm_bf16_cell_state", "part2/lstm_function.py",
       "x.to(dtype), h0.float(), c0.float(), weight_x.to(dtype), weight_h.to(dtype), bias.float(), zero_state",
       "x.to(dtype), h0.to(dtype), c0.to(dtype), weight_x.to(dtype), weight_h.to(dtype), bias.to(dtype), zero_state",
       "under bf16 autocast the gates and cell state are kept in bf16", "test_part2_lstm.py"),
    _m("lstm_gate_buffer_shared", "part2/lstm_function.py",
       "        spare = _spare_gates.pop()\n", "        spare = _spare_gates[-1]\n",
       "the spare gate buffer is lent to every forward pass, not handed to one", "test_part2_lstm.py"),
    _m("sample_temperature_ignored", "part2/model.py",
       "torch.softmax(next_logits / temperature, dim=-1)", "torch.softmax(next_logits, dim=-1)",
       "sampling ignores the temperature", "test_part2_text.py"),
    _m("sample_greedy_not_argmax", "part2/model.py",
       "next_char = next_logits.argmax(dim=-1)",
       "next_char = torch.multinomial(torch.softmax(next_logits, -1), 1, generator=generator).squeeze(1)",
       "temperature 0 samples from the softmax instead of taking the argmax", "test_part2_text.py"),
    _m("sample_records_graph", "part2/model.py",
       "    @torch.no_grad()\n    def sample(", "    def sample(",
       "sampling runs with autograd on (builds a graph per generated character)", "test_part2_text.py"),
    _m("part2_no_grad_clipping", "part2/train.py",
       "        nn.utils.clip_grad_norm_(model.parameters(), clip)\n", "",
       "train_step never clips the gradient norm", "test_part2_text.py"),
    _m("part2_clip_default_changed", "part2/train.py",
       "type=nonnegative_float, default=5.0,", "type=nonnegative_float, default=1.0,",
       "--clip_grad_norm default 1 instead of the assignment's 5", "test_part2_text.py", "test_part2_cli.py"),
    _m("part2_resume_without_dataset_rng", "part2/train.py",
       '    dataset.rng.bit_generator.state = checkpoint["dataset_rng"]\n', "",
       "resume does not restore the dataset's random offsets", "test_part2_text.py"),
    _m("text_targets_not_shifted", "part2/dataset.py",
       "return window[:-1].tolist(), window[1:].tolist()", "return window[:-1].tolist(), window[:-1].tolist()",
       "targets are the inputs, not the next characters", "test_part2_dataset.py", "test_part2_text.py"),
    _m("palindrome_eval_on_train_stream", "part2/palindromes/train.py",
       "PalindromeDataset(seq_length, seed, EVAL_STREAM)", "PalindromeDataset(seq_length, seed, TRAIN_STREAM)",
       "held-out palindromes drawn from the training stream", "test_part2_palindromes.py"),
    # ---------------------------------------------------------------- part 3: QM9, GNN, training
    _m("zscore_whole_dataset", "part3/data.py",
       "train_values = raw[permutation[:NUM_TRAIN]]", "train_values = raw",
       "z-scoring with the whole data set's statistics (test split included)", "test_part3_data.py"),
    _m("gnn_mean_pool", "part3/model.py",
       "from torch_geometric.nn import MFConv, RGCNConv, global_add_pool",
       "from torch_geometric.nn import MFConv, RGCNConv\n"
       "from torch_geometric.nn import global_mean_pool as global_add_pool",
       "GNN read-out mean-pools instead of summing the nodes", "test_part3_models.py"),
    _m("permute_edges_with_perm", "part3/train.py",
       "permuted.edge_index = inverse[molecules.edge_index]", "permuted.edge_index = perm[molecules.edge_index]",
       "edges renamed with the permutation instead of its inverse", "test_part3_train.py"),
    _m("evaluate_ignores_permute", "part3/train.py",
       "                molecules = permute_indices(molecules, generator)\n",
       "                permuted = permute_indices(molecules, generator)  # noqa: F841\n",
       "evaluate computes the permuted batch but uses the original", "test_part3_train.py"),
    _m("evaluate_mean_of_batch_means", "part3/train.py",
       "total += compute_loss(model, molecules, criterion).item() * molecules.num_graphs\n"
       "            count += molecules.num_graphs",
       "total += compute_loss(model, molecules, criterion).item()\n            count += 1",
       "evaluate averages batch means (a short last batch weighs as much as a full one)", "test_part3_train.py"),
    _m("part3_last_epoch_weights", "part3/train.py",
       '    model.load_state_dict(history["best_model"])\n', "",
       "training keeps the last epoch's weights instead of the best validation ones", "test_part3_train.py"),
    # ---------------------------------------------------------------- common
    _m("run_rule_compares_names_only", "common/runs.py",
       "if saved == wanted:", "if saved.keys() == wanted.keys():",
       "run-folder rule resumes a run whose settings differ in value", "test_common.py"),
    _m("atomic_write_in_place", "common/io.py",
       'fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")',
       "fd, tmp = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), str(path)",
       "writes go straight into the target (a failed write destroys the old file)", "test_common.py"),
)  # fmt: skip


# --------------------------------------------------------------------------- applying mutations
def apply_to_text(mutation: Mutation, text: str) -> str:
    """``text`` with the mutation applied; ValueError naming the mutation unless ``old`` occurs exactly once."""
    count = text.count(mutation.old)
    if count != 1:
        where = "does not occur" if count == 0 else f"occurs {count} times"
        raise ValueError(f"mutation {mutation.name}: its old string {where} in {mutation.path}; update it")
    return text.replace(mutation.old, mutation.new)


def check_all_apply(mutations: Sequence[Mutation], read: Callable[[str], str]) -> dict[str, list[str]]:
    """``{mutation name: error lines}`` of the mutations that do not apply to ``read(path)`` or name a missing test."""
    errors: dict[str, list[str]] = {}
    for mutation in mutations:
        problems = []
        try:
            apply_to_text(mutation, read(mutation.path))
        except ValueError as error:
            problems.append(str(error))
        except (OSError, subprocess.CalledProcessError):
            problems.append(f"mutation {mutation.name}: {mutation.path} does not exist at HEAD")
        for test in mutation.tests:
            try:
                read(test)
            except (OSError, subprocess.CalledProcessError):
                problems.append(f"mutation {mutation.name}: test file {test} does not exist at HEAD")
        if problems:
            errors[mutation.name] = problems
    return errors


def git(*args: str, cwd: Path = REPO_ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def read_at_head(path: str) -> str:
    return git("show", f"HEAD:{path}")


# --------------------------------------------------------------------------- worktrees and pytest runs
@contextmanager
def worktrees(count: int) -> Iterator[list[Path]]:
    """``count`` detached worktrees of HEAD in a temporary folder, removed on exit (also on Ctrl-C)."""
    parent = Path(tempfile.mkdtemp(prefix="mutation-check-"))
    made: list[Path] = []
    try:
        for index in range(count):
            path = parent / f"worktree-{index}"
            made.append(path)
            git("worktree", "add", "--detach", "--quiet", str(path), "HEAD")
        yield made
    finally:
        for path in made:
            subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=REPO_ROOT, capture_output=True)
        shutil.rmtree(parent, ignore_errors=True)


class Runner:
    """Runs pytest in a worktree in its own process group, so that a timeout or Ctrl-C ends all it started."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.running: set[subprocess.Popen] = set()
        self.lock = threading.Lock()
        self.stopping = False

    def environment(self, worktree: Path) -> dict[str, str]:
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
        # Subprocesses started by the tests must import the worktree's code too, not the editable install's.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(worktree), os.environ.get("PYTHONPATH")]))
        # The offline data sit beside the live checkout, not beside the temporary worktree.
        env.setdefault("SHARED_DATA", str(REPO_ROOT.parent / "shared" / "data"))
        return env

    def run(self, worktree: Path, pytest_args: Sequence[str], timeout: float) -> tuple[int | None, float, str]:
        """``python -m pytest <pytest_args>`` in ``worktree``: ``(return code or None on timeout, seconds, output)``."""
        tic = time.perf_counter()
        command = [sys.executable, "-m", "pytest", *pytest_args]
        process = subprocess.Popen(
            command,
            cwd=worktree,
            env=self.environment(worktree),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killed as a whole on a timeout or Ctrl-C
        )
        with self.lock:
            self.running.add(process)
            if self.stopping:
                self.kill(process)
        try:
            output, _ = process.communicate(timeout=timeout)
            code = process.returncode
        except subprocess.TimeoutExpired:
            self.kill(process)
            output, code = process.communicate()[0], None
        except BaseException:  # Ctrl-C or SIGTERM while waiting
            self.kill(process)
            raise
        finally:
            with self.lock:
                self.running.discard(process)
        return code, time.perf_counter() - tic, output or ""

    def kill(self, process: subprocess.Popen) -> None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def stop_all(self) -> None:
        with self.lock:
            self.stopping = True
            for process in self.running:
                self.kill(process)


def last_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1].strip("= ") if lines else ""


def run_baseline(runner: Runner, worktree: Path, files: Sequence[str]) -> tuple[set[str], float, str]:
    """The test files among ``files`` that fail at HEAD without any mutation (one pytest run, no ``-x``)."""
    code, seconds, output = runner.run(worktree, ["-q", "-p", "no:cacheprovider", "-rfE", *files], runner.timeout * 4)
    failing = set(re.findall(r"^(?:FAILED|ERROR) (tests/[\w/]+\.py)", output, flags=re.MULTILINE))
    if code not in (0, 1) and not failing:
        failing = set(files)  # a collection error, usage error or timeout: trust none of them
    return failing, seconds, last_line(output) if code is not None else "timeout"


def run_mutation(runner: Runner, worktree: Path, mutation: Mutation) -> dict:
    """Apply ``mutation`` in ``worktree``, run its tests, revert; returns its row of the table."""
    target = worktree / mutation.path
    original = target.read_text(encoding="utf-8")
    target.write_text(apply_to_text(mutation, original), encoding="utf-8")
    try:
        code, seconds, output = runner.run(worktree, [*PYTEST_ARGS, *mutation.tests], runner.timeout)
    finally:
        target.write_text(original, encoding="utf-8")
    result = "timeout" if code is None else OUTCOMES.get(code, f"error (pytest exit {code})")
    return {**asdict(mutation), "result": result, "seconds": seconds, "pytest": last_line(output)}


# --------------------------------------------------------------------------- the report
def markdown_table(rows: Sequence[dict]) -> str:
    """The result table as Markdown (also readable in a terminal)."""
    lines = ["| mutation | file | bug | tests | result | s |", "| --- | --- | --- | --- | --- | ---: |"]
    for row in rows:
        tests = ", ".join(Path(test).name for test in row["tests"])
        lines.append(f"| {row['name']} | {row['path']} | {row['bug']} | {tests} | {row['result']} | "
                     f"{row['seconds']:.0f} |")  # fmt: skip
    return "\n".join(lines)


def summary_lines(rows: Sequence[dict]) -> list[str]:
    """The caught/total line, and the pytest summary of every mutation not caught."""
    counted = [row for row in rows if row["result"] != "baseline fails"]
    caught = sum(row["result"] == "caught" for row in counted)
    share = 100 * caught / len(counted) if counted else 0.0
    lines = [f"caught {caught}/{len(counted)} ({share:.1f} %)"]
    skipped = len(rows) - len(counted)
    if skipped:
        lines.append(f"{skipped} mutation(s) not counted: their tests already fail at HEAD")
    lines += [
        f"  {row['result']}: {row['name']} (pytest: {row['pytest']})" for row in rows if row["result"] != "caught"
    ]
    return lines


def run_all(mutations: Sequence[Mutation], jobs: int, timeout: float, baseline: bool) -> list[dict]:
    """Every mutation in its own pytest run, ``jobs`` at a time (one worktree each); rows in list order."""
    runner = Runner(timeout)
    with worktrees(jobs) as trees:
        head = git("rev-parse", "--short", "HEAD").strip()
        print(f"mutation check of HEAD {head}: {len(mutations)} mutation(s), {jobs} at a time", flush=True)
        failing: set[str] = set()
        if baseline:
            files = sorted({test for mutation in mutations for test in mutation.tests})
            failing, seconds, last = run_baseline(runner, trees[0], files)
            print(f"baseline (no mutation) in {seconds:.0f} s: {last}", flush=True)
            for path in sorted(failing):
                print(f"  fails at HEAD already: {path}", flush=True)
        free: Queue[Path] = Queue()
        for tree in trees:
            free.put(tree)

        def one(mutation: Mutation) -> dict:
            if failing & set(mutation.tests):
                return {**asdict(mutation), "result": "baseline fails", "seconds": 0.0, "pytest": ""}
            tree = free.get()
            try:
                row = run_mutation(runner, tree, mutation)
            finally:
                free.put(tree)
            if not runner.stopping:
                print(f"{row['result']:>8}  {row['name']}  ({row['seconds']:.0f} s)", flush=True)
            return row

        pool = ThreadPoolExecutor(max_workers=jobs)
        try:
            return list(pool.map(one, mutations))
        except BaseException:
            runner.stop_all()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            pool.shutdown(wait=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python tests/mutation_check.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    names = [mutation.name for mutation in MUTATIONS]
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=names, help="run only these mutations")
    parser.add_argument("--list", action="store_true", help="only check that every mutation applies to HEAD")
    parser.add_argument("--jobs", type=int, default=1, help="mutations tested at a time, one worktree each")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per pytest run")
    parser.add_argument("--no_baseline", action="store_true", help="skip the unmutated run of the test files")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.timeout <= 0:
        parser.error("--jobs and --timeout must be positive")
    return args


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    mutations = [m for m in MUTATIONS if args.only is None or m.name in args.only]
    errors = check_all_apply(mutations, read_at_head)
    for problems in errors.values():
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
    if args.list:
        for mutation in mutations:
            mark = "BROKEN " if mutation.name in errors else ""
            print(f"{mark}{mutation.name:40} {mutation.path:28} {' '.join(mutation.tests)}")
        print(f"{len(mutations) - len(errors)}/{len(mutations)} mutations apply to HEAD")
        return 1 if errors else 0
    signal.signal(signal.SIGTERM, interrupt)  # end the pytest runs and remove the worktrees as on Ctrl-C
    runnable = [mutation for mutation in mutations if mutation.name not in errors]
    try:
        rows = run_all(runnable, args.jobs, args.timeout, not args.no_baseline)
    except KeyboardInterrupt:
        print("interrupted; the worktrees were removed", file=sys.stderr)
        return 130
    print()
    print(markdown_table(rows))
    print()
    print("\n".join(summary_lines(rows)))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
