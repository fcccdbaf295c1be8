"""Questions 3.6 (b) and (d): the student's MLP and GNN, compute_loss and evaluate_model, on real QM9 molecules.

``compute_loss`` and ``evaluate_model`` are checked with probe models: subclasses
of the student's own ``MLP``/``GNN`` (so ``isinstance`` and name tests in their
code pick the right branch) whose ``forward`` records its inputs and returns a
known prediction. The models' own checks use the student's classes as they are.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.loader import DataLoader
from torch_geometric.nn import MFConv, RGCNConv

from grading.failures import CheckFailed, call_student
from grading.molecules import (
    FLAT_INPUT_DIM,
    Z_ONE_HOT_DIM,
    batch_of,
    copies_as_one_graph,
    mlp_features,
    permute_atoms,
    qm9_molecules,
)

NETWORKS, TRAIN = "part3/networks.py", "part3/train.py"
HIDDEN_LAYERS = [32, 16]
GNN_HIDDEN, GNN_BLOCKS = 16, 2


def _molecules(ctx):
    if "molecules" not in ctx.cache:
        ctx.cache["molecules"] = qm9_molecules()
    return ctx.cache["molecules"]


def _per_molecule(out, count: int, call: str) -> torch.Tensor:
    """A model's output as ``[molecules]``: ``[M, 1]`` and ``[M]`` are accepted."""
    if not isinstance(out, torch.Tensor):
        raise CheckFailed(f"{call} returned {type(out).__name__}, expected a tensor with one value per molecule")
    if tuple(out.shape) not in ((count, 1), (count,)):
        raise CheckFailed(f"{call} returned shape {tuple(out.shape)} for {count} molecules, expected ({count}, 1)")
    return out.detach().reshape(count).double()


# --------------------------------------------------------------------------- the MLP
def _mlp(ctx, hidden=HIDDEN_LAYERS, inputs: int = FLAT_INPUT_DIM, outputs: int = 1) -> nn.Module:
    torch.manual_seed(0)
    model = call_student(
        f"MLP({inputs}, {hidden}, {outputs})", ctx.code.attribute(NETWORKS, "MLP"), inputs, list(hidden), outputs
    )
    if not isinstance(model, nn.Module):
        raise CheckFailed(f"MLP(...) made a {type(model).__name__}, not an nn.Module")
    return call_student(f"MLP({inputs}, {hidden}, {outputs}).eval()", model.eval)


def _mlp_outputs(model: nn.Module, batch) -> torch.Tensor:
    call = f"MLP.forward(features of {batch.num_graphs} molecules, shape [{batch.num_graphs}, {FLAT_INPUT_DIM}])"
    with torch.no_grad():
        return _per_molecule(call_student(call, model, mlp_features(batch)), batch.num_graphs, call)


def check_mlp_shape(ctx) -> None:
    """``MLP(3509, [32, 16], 1)`` maps the padded flat features of 12 molecules to 12 finite outputs."""
    out = _mlp_outputs(_mlp(ctx), batch_of(_molecules(ctx)))
    if not torch.isfinite(out).all():
        raise CheckFailed("MLP outputs contain NaN or infinite values")


def check_mlp_layers(ctx) -> None:
    """The ``nn.Linear`` layers chain n_inputs -> n_hidden[0] -> ... -> n_outputs (one layer without hidden)."""
    for inputs, hidden, outputs in ((FLAT_INPUT_DIM, HIDDEN_LAYERS, 1), (FLAT_INPUT_DIM, [], 1), (100, [7], 3)):
        model = _mlp(ctx, hidden, inputs, outputs)
        layers = [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]
        widths = [inputs, *hidden, outputs]
        expected = list(zip(widths[:-1], widths[1:]))
        if layers != expected:
            raise CheckFailed(f"MLP({inputs}, {hidden}, {outputs}) has Linear layers {layers}, expected {expected}")


def check_mlp_nonlinear(ctx) -> None:
    """``f(a + b) - f(a) - f(b) + f(0) != 0``: there are nonlinearities between the layers."""
    model = _mlp(ctx)
    features = mlp_features(batch_of(_molecules(ctx)[:2]))
    a, b = features[0:1], features[1:2]
    with torch.no_grad():
        values = [call_student("MLP.forward", model, v).double().sum() for v in (a + b, a, b, torch.zeros_like(a))]
    if abs(float(values[0] - values[1] - values[2] + values[3])) < 1e-6:
        raise CheckFailed(
            f"MLP(3509, {HIDDEN_LAYERS}, 1) is affine in its input: put a nonlinearity (ReLU) between the linear layers"
        )


def check_mlp_independent(ctx) -> None:
    """In eval mode, each molecule's output is the same alone as in a batch of 12."""
    model, molecules = _mlp(ctx), _molecules(ctx)
    together = _mlp_outputs(model, batch_of(molecules))
    for index, single in enumerate(molecules):
        alone = _mlp_outputs(model, batch_of([single]))[0]
        if abs(float(alone - together[index])) > 1e-5 * (1 + abs(float(alone))):
            raise CheckFailed(
                f"MLP output of molecule {index} is {float(alone):.5g} alone but "
                f"{float(together[index]):.5g} in a batch of {len(molecules)} (eval mode)"
            )


def check_mlp_order(ctx) -> None:
    """Renumbering the atoms changes the MLP's outputs (it reads atoms by position, as the assignment shows)."""
    model, batch = _mlp(ctx), batch_of(_molecules(ctx))
    change = (_mlp_outputs(model, batch) - _mlp_outputs(model, permute_atoms(batch, seed=0))).abs().max()
    if change < 1e-6:
        raise CheckFailed(
            "renumbering the atoms does not change the MLP's output; an MLP on the padded features "
            "depends on the atom order (does it use its input?)"
        )


# --------------------------------------------------------------------------- the GNN
def _gnn(ctx, blocks: int = GNN_BLOCKS) -> nn.Module:
    torch.manual_seed(0)
    call = (
        f"GNN(n_node_features=5, n_edge_features=4, n_hidden={GNN_HIDDEN}, n_output=1, num_convolution_blocks={blocks})"
    )
    model = call_student(call, ctx.code.attribute(NETWORKS, "GNN"), 5, 4, GNN_HIDDEN, 1, blocks)
    if not isinstance(model, nn.Module):
        raise CheckFailed(f"GNN(...) made a {type(model).__name__}, not an nn.Module")
    return call_student(f"{call}.eval()", model.eval)


def _gnn_outputs(model: nn.Module, batch) -> torch.Tensor:
    call = f"GNN.forward(x, edge_index, edge_attr, batch_idx) on {batch.num_graphs} molecule(s)"
    with torch.no_grad():
        out = call_student(call, model, batch.x[:, :Z_ONE_HOT_DIM], batch.edge_index, batch.edge_attr, batch.batch)
    return _per_molecule(out, batch.num_graphs, call)


def check_gnn_shape(ctx) -> None:
    """``GNN(5, 4, 16, 1, 2)`` gives one finite output per molecule of a batch of 12."""
    out = _gnn_outputs(_gnn(ctx), batch_of(_molecules(ctx)))
    if not torch.isfinite(out).all():
        raise CheckFailed("GNN outputs contain NaN or infinite values")


def check_gnn_structure(ctx) -> None:
    """num_convolution_blocks RGCNConv and as many MFConv layers (2 and 3 blocks)."""
    for blocks in (2, 3):
        model = _gnn(ctx, blocks)
        counts = {cls.__name__: sum(isinstance(m, cls) for m in model.modules()) for cls in (RGCNConv, MFConv)}
        if any(count != blocks for count in counts.values()):
            found = ", ".join(f"{count} {name}" for name, count in counts.items())
            raise CheckFailed(
                f"GNN(..., num_convolution_blocks={blocks}) has {found}; expected {blocks} of each "
                "([ReLU -> RGCNConv -> ReLU -> MFConv] per block)"
            )


def check_gnn_add_pool(ctx) -> None:
    """A graph of two or three disjoint copies of a molecule gets a different output than one copy.

    Summing over atoms doubles the pooled vector; mean or max pooling (or
    reading single atoms) leaves it unchanged.
    """
    model = _gnn(ctx)
    for single in _molecules(ctx)[:4]:
        outputs = [float(_gnn_outputs(model, copies_as_one_graph(single, k))[0]) for k in (1, 2, 3)]
        if abs(outputs[1] - outputs[0]) > 1e-5 and abs(outputs[2] - outputs[1]) > 1e-5:
            return
    raise CheckFailed(
        "a graph made of 2 or 3 disjoint copies of a molecule gets the same output as one copy: "
        "the GNN does not sum over the atoms (mean or max pooling?); use global_add_pool"
    )


def check_gnn_permutation(ctx) -> None:
    """Renumbering the atoms of 12 real QM9 molecules leaves every output unchanged (eval mode)."""
    model, batch = _gnn(ctx), batch_of(_molecules(ctx))
    before = _gnn_outputs(model, batch)
    for seed in range(3):
        after = _gnn_outputs(model, permute_atoms(batch, seed))
        difference = (after - before).abs()
        if difference.max() > 1e-4 * (1 + before.abs().max()):
            index = int(difference.argmax())
            raise CheckFailed(
                f"renumbering the atoms of molecule {index} changes its GNN output from "
                f"{float(before[index]):.5g} to {float(after[index]):.5g}: the GNN is not permutation "
                "invariant (does it read atoms by position?)"
            )


def check_gnn_independent(ctx) -> None:
    """Each molecule's output is the same alone as in a batch of 12 (the batch vector separates molecules)."""
    model, molecules = _gnn(ctx), _molecules(ctx)
    together = _gnn_outputs(model, batch_of(molecules))
    for index, single in enumerate(molecules):
        alone = _gnn_outputs(model, batch_of([single]))[0]
        if abs(float(alone - together[index])) > 1e-4 * (1 + abs(float(alone))):
            raise CheckFailed(
                f"GNN output of molecule {index} is {float(alone):.5g} alone but "
                f"{float(together[index]):.5g} in a batch of {len(molecules)}: molecules leak into "
                "each other (pool with batch_idx)"
            )


# --------------------------------------------------------------------------- compute_loss and evaluate_model
def _probe_class(ctx, kind: str):
    """A subclass of the student's MLP or GNN, named like it, whose forward records its inputs.

    The MLP probe predicts a fixed linear function of the flat features; the
    GNN probe the weighted atom count of each molecule (permutation invariant)
    or, with ``order_dependent``, a value read from each molecule's first atom.
    """
    student = ctx.code.attribute(NETWORKS, kind)

    class Probe(student):
        def __init__(self, order_dependent: bool = False) -> None:
            nn.Module.__init__(self)
            size = FLAT_INPUT_DIM if kind == "MLP" else Z_ONE_HOT_DIM
            self.weight = nn.Parameter(torch.linspace(-1.0, 1.0, size) * (0.05 if kind == "MLP" else 0.7))
            self.order_dependent = order_dependent
            self.calls: list[tuple] = []

        def forward(self, *inputs, **named):
            inputs = (*inputs, *named.values())  # keyword arguments in the order given
            self.calls.append(tuple(t.detach().clone() if isinstance(t, torch.Tensor) else t for t in inputs))
            return _probe_prediction(self, kind, inputs)

    Probe.__name__ = Probe.__qualname__ = kind
    return Probe


def _probe_prediction(probe: nn.Module, kind: str, inputs: tuple) -> torch.Tensor:
    if kind == "MLP":
        return (inputs[0] @ probe.weight).unsqueeze(1)
    x, batch_idx = inputs[0], inputs[3]
    per_atom = x[:, : probe.weight.numel()] @ probe.weight
    count = int(batch_idx.max()) + 1 if batch_idx.numel() else 0
    if probe.order_dependent:
        first = torch.ones_like(batch_idx, dtype=torch.bool)
        first[1:] = batch_idx[1:] != batch_idx[:-1]
        return (3.0 * per_atom[first]).unsqueeze(1)
    return torch.zeros(count).index_add(0, batch_idx, per_atom).unsqueeze(1)


def _expected_loss(probe: nn.Module, kind: str, batch) -> float:
    inputs = (
        (mlp_features(batch),)
        if kind == "MLP"
        else (batch.x[:, :Z_ONE_HOT_DIM], batch.edge_index, batch.edge_attr, batch.batch)
    )
    with torch.no_grad():
        prediction = _probe_prediction(probe, kind, inputs).reshape(-1)
    return float(((prediction - batch.y[:, 0]) ** 2).mean())


def _compute_loss(ctx, probe: nn.Module, batch) -> float:
    compute_loss = ctx.code.attribute(TRAIN, "compute_loss")
    name = type(probe).__name__
    loss = call_student(
        f"compute_loss({name}, batch of {batch.num_graphs} molecules, MSELoss())",
        compute_loss,
        probe,
        batch,
        nn.MSELoss(),
    )
    try:
        return float(loss)
    except (TypeError, ValueError):
        raise CheckFailed(f"compute_loss({name}, ...) returned {type(loss).__name__}, expected a scalar loss") from None


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-5 * (1 + abs(b))


def check_compute_loss_mlp(ctx) -> None:
    """For an MLP, compute_loss feeds the padded flat features and returns MSE(prediction, U0 label)."""
    probe, batch = _probe_class(ctx, "MLP")(), batch_of(_molecules(ctx)[:6])
    loss = _compute_loss(ctx, probe, batch)
    if not probe.calls:
        raise CheckFailed("compute_loss(MLP, ...) never calls the model")
    given, expected = probe.calls[0][0], mlp_features(batch)
    if not isinstance(given, torch.Tensor) or given.shape != expected.shape or not torch.allclose(given, expected):
        shape = tuple(given.shape) if isinstance(given, torch.Tensor) else type(given).__name__
        raise CheckFailed(
            f"compute_loss gives the MLP input of shape {shape}, not the padded flat features "
            f"{tuple(expected.shape)} of get_mlp_features"
        )
    _check_loss_value(loss, _expected_loss(probe, "MLP", batch), "MLP")


def _check_loss_value(loss: float, expected: float, kind: str) -> None:
    if not _same(loss, expected):
        raise CheckFailed(
            f"compute_loss({kind}, ...) returned {loss:.6g}, expected MSE(prediction, label) = "
            f"{expected:.6g} (prediction [M, 1] against labels [M] broadcasts to [M, M]: squeeze it)"
        )


def check_compute_loss_gnn(ctx) -> None:
    """For a GNN, compute_loss feeds one-hot atoms [N, 5], edge_index, one-hot edge_attr and the batch vector."""
    probe, batch = _probe_class(ctx, "GNN")(), batch_of(_molecules(ctx)[:6])
    loss = _compute_loss(ctx, probe, batch)
    if not probe.calls:
        raise CheckFailed("compute_loss(GNN, ...) never calls the model")
    given = probe.calls[0]
    expected = (batch.x[:, :Z_ONE_HOT_DIM], batch.edge_index, batch.edge_attr, batch.batch)
    names = (
        "x (one-hot atom types, get_node_features)",
        "edge_index",
        "edge_attr (one-hot bond types)",
        "batch_idx (molecules.batch)",
    )
    if len(given) != 4:
        raise CheckFailed(
            f"compute_loss calls the GNN with {len(given)} arguments, expected x, edge_index, edge_attr, batch_idx"
        )
    for name, got, want in zip(names, given, expected):
        if not isinstance(got, torch.Tensor) or got.shape != want.shape or not torch.equal(got.to(want.dtype), want):
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise CheckFailed(
                f"compute_loss gives the GNN a wrong {name}: shape {shape}, expected "
                f"{tuple(want.shape)} equal to the batch's"
            )
    _check_loss_value(loss, _expected_loss(probe, "GNN", batch), "GNN")


def _evaluate(ctx, probe: nn.Module, loader, permute: bool) -> float:
    evaluate = ctx.code.attribute(TRAIN, "evaluate_model")
    value = call_student(
        f"evaluate_model({type(probe).__name__}, loader, MSELoss(), permute={permute})",
        evaluate,
        probe,
        loader,
        nn.MSELoss(),
        permute,
    )
    try:
        return float(value)
    except (TypeError, ValueError):
        raise CheckFailed(f"evaluate_model returned {type(value).__name__}, expected a float") from None


def check_evaluate_model_average(ctx) -> None:
    """10 molecules in batches of 4, 4, 2: the mean loss over molecules (a mean of batch means differs)."""
    probe, molecules = _probe_class(ctx, "MLP")(), _molecules(ctx)[:10]
    loader = DataLoader(molecules, batch_size=4)
    value = _evaluate(ctx, probe, loader, permute=False)
    expected = _expected_loss(probe, "MLP", batch_of(molecules))
    if _same(value, expected):
        return
    batch_means = sum(_expected_loss(probe, "MLP", b) for b in loader) / len(loader)
    if _same(value, batch_means):
        raise CheckFailed(
            f"evaluate_model averages the batch losses ({value:.5g} for batches of 4, 4, 2 "
            f"molecules); weight each batch by its size: expected {expected:.5g}"
        )
    raise CheckFailed(
        f"evaluate_model(permute=False) returned {value:.5g} for 10 molecules in batches of 4, 4, 2; "
        f"expected the mean loss over molecules {expected:.5g}"
    )


def check_evaluate_model_permute(ctx) -> None:
    """``permute=True`` renumbers the atoms of every batch (``permute_indices``); ``permute=False`` does not."""
    evaluate = ctx.code.attribute(TRAIN, "evaluate_model")
    probe, molecules = _probe_class(ctx, "GNN")(order_dependent=True), _molecules(ctx)[:8]
    loader = DataLoader(molecules, batch_size=4)
    unpermuted = _expected_loss(probe, "GNN", batch_of(molecules))
    namespace = evaluate.__globals__
    original = namespace.get("permute_indices")
    permuted_batches: list = []
    if callable(original):

        def spy(molecules, *args, **kwargs):
            result = original(molecules, *args, **kwargs)
            permuted_batches.append(result)
            return result

        namespace["permute_indices"] = spy
    try:
        torch.manual_seed(0)
        plain = _evaluate(ctx, probe, loader, permute=False)
        calls_without = len(permuted_batches)
        permuted = _evaluate(ctx, probe, loader, permute=True)
    finally:
        if callable(original):
            namespace["permute_indices"] = original
    if calls_without or not _same(plain, unpermuted):
        raise CheckFailed(
            f"evaluate_model(permute=False) returned {plain:.5g}, expected {unpermuted:.5g} "
            "(the loss on the molecules as given)"
        )
    if permuted_batches:
        expected = sum(_expected_loss(probe, "GNN", b) * b.num_graphs for b in permuted_batches) / len(molecules)
        if len(permuted_batches) != len(loader) or not _same(permuted, expected):
            raise CheckFailed(
                f"evaluate_model(permute=True) called permute_indices on {len(permuted_batches)} of "
                f"{len(loader)} batches, or did not evaluate the permuted molecules"
            )
    elif _same(permuted, unpermuted):
        raise CheckFailed(
            "evaluate_model(permute=True) gives the same loss as permute=False for a model that "
            "depends on the atom order: the atoms are not permuted"
        )
