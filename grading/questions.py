"""The graded questions and their checks: ids, points, time limits (no torch import here).

A question's points are split over its checks. A check passes or fails as a
whole; each check function lives in a ``grading.checks_*`` module and is named
by ``func``. ``requires_any`` lists checks of which at least one must pass for
this check's points to count: it keeps checks of code the template already
gives (``get_model``) or of properties an empty function has trivially ("does
not modify its input") from scoring on an unfilled template. ``group`` names the
component a check exercises: when a check of a group times out or kills its
process, the group's remaining checks are failed without running them.

Worker groups (``QUESTION_WORKERS``) are the questions graded in one process:
they load the same student files.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    """One graded property of a student's code."""

    question: str
    name: str
    points: float
    title: str
    func: str
    limit: float = 30.0
    requires_any: tuple[str, ...] = ()
    group: str = ""

    @property
    def id(self) -> str:
        return f"{self.question}/{self.name}"


@dataclass(frozen=True)
class Question:
    """A question of the assignment that student code answers."""

    id: str
    title: str
    points: float
    worker: str
    checks: tuple[Check, ...]


def _checks(question: str, module: str, group_of, rows) -> tuple[Check, ...]:
    """Rows ``(name, points, title, limit, requires_any)`` -> checks of ``question`` in ``grading.<module>``."""
    checks = []
    for name, points, title, limit, requires in rows:
        func = f"grading.{module}:check_{name.replace('.', '_')}"
        full_requires = tuple(f"{question}/{r}" for r in requires)
        checks.append(Check(question, name, points, title, func, limit, full_requires, group_of(name)))
    return tuple(checks)


def _prefix(name: str) -> str:
    return name.split(".")[0]


_CNN_VALUES = {
    "zero_padding": ("zero_padding.values", "zero_padding.zero"),
    "conv2d": ("conv2d.basic", "conv2d.padding", "conv2d.stride", "conv2d.shapes"),
    "backward_filter": (
        "backward_filter.basic",
        "backward_filter.stride",
        "backward_filter.skip",
        "backward_filter.shapes",
    ),
    "backward_input": ("backward_input.basic", "backward_input.stride", "backward_input.shapes"),
    "pool_forward": ("pool_forward.basic", "pool_forward.stride", "pool_forward.shapes"),
    "pool_back": ("pool_back.basic", "pool_back.stride", "pool_back.ties"),
}

Q11 = _checks(
    "1.1",
    "checks_cnn",
    _prefix,
    [
        ("zero_padding.values", 0.5, "zero_padding: values and shape, unequal paddings", 10, ()),
        ("zero_padding.zero", 0.25, "zero_padding: padding 0 on one or both axes", 10, ()),
        ("zero_padding.unchanged", 0.25, "zero_padding: does not modify its input", 10, _CNN_VALUES["zero_padding"]),
        ("conv2d.basic", 0.5, "convolution2D: square inputs, stride 1 and 2, no padding", 10, ()),
        ("conv2d.padding", 0.5, "convolution2D: equal, unequal and one-sided padding", 10, ()),
        ("conv2d.stride", 0.5, "convolution2D: unequal strides, stride > filter", 10, ()),
        ("conv2d.shapes", 0.25, "convolution2D: non-square inputs/filters/outputs, batch 1, one channel", 10, ()),
        ("conv2d.unchanged", 0.25, "convolution2D: does not modify its inputs", 10, _CNN_VALUES["conv2d"]),
        ("backward_filter.basic", 0.75, "convolution2D_backward_filter: square, stride 1 and 2", 10, ()),
        ("backward_filter.stride", 0.75, "convolution2D_backward_filter: unequal strides", 10, ()),
        ("backward_filter.skip", 0.5, "convolution2D_backward_filter: stride > filter (skipped pixels)", 10, ()),
        ("backward_filter.shapes", 0.75, "convolution2D_backward_filter: non-square, batch 1, one channel", 10, ()),
        (
            "backward_filter.unchanged",
            0.25,
            "convolution2D_backward_filter: does not modify its inputs",
            10,
            _CNN_VALUES["backward_filter"],
        ),
        ("backward_input.basic", 0.5, "convolution2D_backward_input: square, stride 1 and 2", 10, ()),
        ("backward_input.stride", 0.5, "convolution2D_backward_input: unequal strides, stride > filter", 10, ()),
        ("backward_input.shapes", 0.75, "convolution2D_backward_input: non-square, batch 1, one channel", 10, ()),
        (
            "backward_input.unchanged",
            0.25,
            "convolution2D_backward_input: does not modify its inputs",
            10,
            _CNN_VALUES["backward_input"],
        ),
        ("pool_forward.basic", 0.25, "pool_forward: non-overlapping windows", 10, ()),
        ("pool_forward.stride", 0.25, "pool_forward: overlapping (s < f) and skipping (s > f) windows", 10, ()),
        ("pool_forward.shapes", 0.25, "pool_forward: non-square and odd sizes, batch 1, one channel", 10, ()),
        ("pool_forward.unchanged", 0.25, "pool_forward: does not modify its input", 10, _CNN_VALUES["pool_forward"]),
        ("pool_back.basic", 0.25, "pool_back: non-overlapping windows", 10, ()),
        ("pool_back.stride", 0.25, "pool_back: overlapping and skipping windows, non-square", 10, ()),
        ("pool_back.ties", 0.25, "pool_back: tied maxima get the window's gradient once", 10, ()),
        ("pool_back.unchanged", 0.25, "pool_back: does not modify its inputs", 10, _CNN_VALUES["pool_back"]),
    ],
)

_TRAIN_GROUP = {"train_model": "train_model"}
Q12 = _checks(
    "1.2(a)",
    "checks_training",
    lambda name: _TRAIN_GROUP.get(_prefix(name), _prefix(name)),
    [
        ("evaluate_model.average", 1.0, "evaluate_model: accuracy over images, not a mean of batch accuracies", 30, ()),
        ("evaluate_model.eval_mode", 1.0, "evaluate_model: evaluates in eval mode (dropout/batch-norm off)", 30, ()),
        ("train_model.epochs", 1.0, "train_model: trains the requested number of epochs over all batches", 90, ()),
        ("train_model.schedule", 1.0, "train_model: steps the learning-rate schedule once per epoch", 90, ()),
        ("train_model.validation", 0.5, "train_model: validates after every epoch", 90, ()),
        ("train_model.best", 1.0, "train_model: returns the model of the best validation epoch", 90, ()),
        ("train_model.checkpoint", 0.5, "train_model: saves the best model at checkpoint_name", 90, ()),
        ("test_model.corruptions", 1.0, "test_model: clean test set plus 4 corruptions x 5 severities", 90, ()),
        (
            "get_model.architectures",
            1.0,
            "get_model (given code): the six networks with 10 outputs",
            90,
            (
                "evaluate_model.average",
                "evaluate_model.eval_mode",
                "train_model.epochs",
                "train_model.best",
                "test_model.corruptions",
            ),
        ),
    ],
)

_LSTM_WITHOUT_FORWARD = ("no_builtin", "parameter_count", "init_bounds")
Q23 = _checks(
    "2.3",
    "checks_lstm",
    lambda name: "lstm.init" if name in _LSTM_WITHOUT_FORWARD else "lstm.forward",
    [
        ("shape", 1.0, "LSTM(lstm_hidden_dim, embedding_size): output [T, B, H] float for several T, B", 30, ()),
        ("no_builtin", 0.5, "no nn.LSTM/LSTMCell/RNN/GRU/Linear or torch RNN calls inside", 30, ("shape",)),
        ("parameter_count", 0.5, "parameter count 4(EH + HH + H), or 4(EH + HH + 2H) with two biases", 30, ()),
        ("init_bounds", 0.5, "parameters initialised uniformly in [-1/sqrt(H), 1/sqrt(H)]", 30, ()),
        ("forget_bias", 1.0, "forget-gate bias initialised with +1 (and no other gate's)", 60, ()),
        ("causal", 0.5, "output at t does not depend on inputs after t", 30, ()),
        ("state_carry", 1.0, "the state is carried over time steps", 30, ()),
        ("equations", 2.0, "gates and cell update match equations 8-13 (gate roles found by probing)", 60, ()),
    ],
)

Q24A = _checks(
    "2.4(a)",
    "checks_text",
    lambda name: "text",
    [
        ("shape", 2.0, "TextGenerationModel(args): forward [T, B] indices -> [T, B, V] float", 30, ()),
        ("logits", 1.5, "forward returns logits, not probabilities", 30, ()),
        ("own_lstm", 1.0, "built on the student's own LSTM, no torch RNN module", 30, ("shape",)),
        ("causal", 1.0, "logits at t do not depend on characters after t", 30, ()),
        ("sample_shape", 1.0, "sample(temperature=0): [sample_length, batch_size] indices in range", 30, ()),
        ("greedy", 1.5, "greedy sampling equals the argmax of a full forward pass over the prefix", 30, ()),
    ],
)

Q24C = _checks(
    "2.4(c)",
    "checks_text",
    lambda name: "sample",
    [
        ("temperature_valid", 1.0, "sample(temperature > 0): indices in range, random (differs across seeds)", 30, ()),
        ("temperature_low", 2.0, "temperature 0.5 samples from softmax(logits / 0.5) (fitted statistically)", 60, ()),
        ("temperature_high", 2.0, "temperature 2 samples from softmax(logits / 2) (fitted statistically)", 60, ()),
    ],
)

Q36B = _checks(
    "3.6(b)",
    "checks_graphs",
    _prefix,
    [
        ("mlp.shape", 1.5, "MLP(3509, hidden, 1): one output per molecule of a real QM9 batch", 30, ()),
        ("mlp.layers", 1.5, "MLP layers: Linear 3509 -> hidden... -> 1 (no hidden layer: one Linear)", 30, ()),
        ("mlp.nonlinear", 1.0, "MLP has nonlinearities between its layers", 30, ()),
        (
            "mlp.independent",
            0.5,
            "MLP output of a molecule does not depend on the rest of the batch (eval mode)",
            30,
            (),
        ),
        ("mlp.order", 0.5, "MLP reads atoms by position: renumbering the atoms changes its output", 30, ()),
        ("compute_loss.mlp", 1.0, "compute_loss: MLP gets the padded flat features, loss on U0 labels", 30, ()),
        ("evaluate_model.average", 1.0, "evaluate_model: mean loss over molecules, not over batches", 30, ()),
    ],
)

Q36D = _checks(
    "3.6(d)",
    "checks_graphs",
    _prefix,
    [
        ("gnn.shape", 1.0, "GNN(5, 4, hidden, 1, blocks): one output per molecule of a real QM9 batch", 30, ()),
        ("gnn.structure", 1.5, "GNN has num_convolution_blocks RGCNConv and MFConv layers", 30, ()),
        ("gnn.add_pool", 1.0, "GNN pools by summing over atoms (two copies of a molecule change the output)", 30, ()),
        ("gnn.permutation", 1.5, "GNN output invariant under renumbering the atoms of real QM9 molecules", 30, ()),
        ("gnn.independent", 1.0, "GNN output of a molecule does not depend on the rest of the batch", 30, ()),
        ("compute_loss.gnn", 1.0, "compute_loss: GNN gets one-hot atoms, edges, edge attributes, batch vector", 30, ()),
        ("evaluate_model.permute", 1.0, "evaluate_model(permute=True) renumbers the atoms of every batch", 30, ()),
    ],
)

QUESTIONS: tuple[Question, ...] = (
    Question("1.1", "NumPy CNN block (notebook)", 10, "cnn", Q11),
    Question("1.2(a)", "CIFAR-10 training and testing code", 8, "training", Q12),
    Question("2.3", "LSTM", 7, "rnn", Q23),
    Question("2.4(a)", "Text generation model", 8, "rnn", Q24A),
    Question("2.4(c)", "Temperature sampling", 5, "rnn", Q24C),
    Question("3.6(b)", "MLP on QM9", 7, "graph", Q36B),
    Question("3.6(d)", "GNN on QM9", 8, "graph", Q36D),
)

QUESTION_IDS = tuple(q.id for q in QUESTIONS)
WORKERS = ("cnn", "training", "rnn", "graph")


def question(question_id: str) -> Question:
    """The question with this id (e.g. ``"2.4(a)"``)."""
    for q in QUESTIONS:
        if q.id == question_id:
            return q
    raise KeyError(question_id)


def all_checks() -> dict[str, Check]:
    """Every check by id, in grading order."""
    return {c.id: c for q in QUESTIONS for c in q.checks}


def _validate() -> None:
    """Each question's checks add up to its points (a typo in the table must not go unnoticed)."""
    for q in QUESTIONS:
        total = sum(c.points for c in q.checks)
        if abs(total - q.points) > 1e-9:
            raise AssertionError(f"checks of question {q.id} add up to {total}, not {q.points}")


_validate()
