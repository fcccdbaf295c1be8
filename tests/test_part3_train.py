"""Atom permutation, loss, evaluation, training and the command line of part 3."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from part3 import train as trainer
from part3.data import get_qm9
from part3.features import FLAT_INPUT_DIM, get_labels, get_mlp_features
from part3.loader import GraphLoader
from part3.model import GNN, MLP

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def valid(qm9_data_dir):
    return get_qm9(qm9_data_dir)[1]


@pytest.fixture(scope="module")
def molecules(valid):
    return GraphLoader(valid, batch_size=32).collate(torch.tensor(valid.indices()[:32]))


def _edges(molecules, atom_label):
    """Multiset of (molecule, atom label of source, atom label of target, bond type)."""
    source, target = molecules.edge_index
    return sorted(
        zip(
            molecules.batch[source].tolist(),
            atom_label[source].tolist(),
            atom_label[target].tolist(),
            molecules.edge_attr.argmax(dim=1).tolist(),
        )
    )


def test_permute_indices_gives_an_isomorphic_batch_and_keeps_its_input(molecules):
    # Label every atom with its old number (in z) to read the permutation off the result.
    labelled = copy.copy(molecules)
    labelled.z = torch.arange(molecules.num_nodes)
    before = copy.deepcopy(labelled)
    permuted = trainer.permute_indices(labelled, torch.Generator().manual_seed(1))
    for key in ("x", "z", "edge_index", "edge_attr", "batch", "ptr", "y"):
        assert torch.equal(labelled[key], before[key]), key  # input untouched

    old_of_new = permuted.z
    assert torch.equal(torch.sort(old_of_new).values, labelled.z)  # a permutation
    assert torch.equal(molecules.batch[old_of_new], molecules.batch)  # atoms stay in their molecule
    assert torch.equal(permuted.batch, molecules.batch)
    assert (old_of_new != labelled.z).float().mean() > 0.5
    assert torch.equal(permuted.x, molecules.x[old_of_new])
    # The same bonds between the same atoms (named by their old numbers), with the same types...
    assert _edges(permuted, old_of_new) == _edges(molecules, labelled.z)
    # ...hence the same multiset of (atom type, atom type, bond type) per molecule.
    assert _edges(permuted, molecules.z[old_of_new]) == _edges(molecules, molecules.z)
    assert _edges(permuted, permuted.x.argmax(dim=1)) == _edges(molecules, molecules.x.argmax(dim=1))


def test_compute_loss_matches_the_mse_of_each_model(molecules):
    torch.manual_seed(0)
    mlp = MLP(FLAT_INPUT_DIM, [16], 1)
    gnn = GNN(5, 4, 16, 1, 1)
    labels = get_labels(molecules)
    expected_mlp = ((mlp(get_mlp_features(molecules)).squeeze(1) - labels) ** 2).mean()
    expected_gnn = (
        (gnn(molecules.x, molecules.edge_index, molecules.edge_attr, molecules.batch).squeeze(1) - labels) ** 2
    ).mean()
    assert torch.allclose(trainer.compute_loss(mlp, molecules, nn.MSELoss()), expected_mlp)
    assert torch.allclose(trainer.compute_loss(gnn, molecules, nn.MSELoss()), expected_gnn)
    with pytest.raises(TypeError):
        trainer.compute_loss(nn.Linear(3, 1), molecules, nn.MSELoss())


def test_evaluate_model_averages_over_molecules_not_batches(valid):
    torch.manual_seed(0)
    model = GNN(5, 4, 16, 1, 1)
    subset = valid[:100]
    losses = [
        trainer.evaluate_model(model, GraphLoader(subset, batch_size), nn.MSELoss(), permute=False)
        for batch_size in (7, 100)
    ]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert model.training  # evaluation restores the mode


def test_short_training_lowers_the_validation_loss(qm9_data_dir):
    for model in (MLP(FLAT_INPUT_DIM, [64, 64], 1), GNN(5, 4, 32, 1, 2)):
        _, test_loss, permuted_loss, val_losses, info = trainer.train(
            model, 1e-3, 64, 2, 0, qm9_data_dir, train_subset=2000, eval_subset=300
        )
        assert len(val_losses) == 2
        assert val_losses[-1] < 0.8 * info["val_loss_before_training"]
        assert info["test_loss"] == test_loss and info["permuted_test_loss"] == permuted_loss
        assert info["num_train"] == 2000 and info["num_test"] == 300
        if isinstance(model, GNN):
            assert permuted_loss == pytest.approx(test_loss, rel=1e-4)
        else:
            assert permuted_loss > test_loss


def test_command_line_run_writes_results_and_resumes_the_same_settings(qm9_data_dir, tmp_path, capsys):
    results_dir = tmp_path / "results"
    argv = ["--model", "both", "--epochs", "1", "--data_dir", str(qm9_data_dir), "--results_dir", str(results_dir),
            "--train_subset", "300", "--eval_subset", "100", "--batch_size", "64", "--mlp_hidden_dims", "32",
            "--gnn_hidden_dims", "16", "--threads", "1"]  # fmt: skip
    trainer.cli(argv)
    out = capsys.readouterr().out
    assert out.startswith("python -m part3.train: device cpu, precision fp32, 1 thread(s)")
    assert "results written to" in out
    for name in ("mlp.json", "gnn.json", "comparison.json", "comparison_results.md", "comparison_validation_curves.png",
                 "comparison_test_vs_permuted.png", "mlp_checkpoint.pt", "gnn_best.pt", "run.config.json"):  # fmt: skip
        assert (results_dir / name).is_file(), name
    comparison = json.loads((results_dir / "comparison.json").read_text())
    for name in ("mlp", "gnn"):
        result = comparison[name]
        assert len(result["val_losses"]) == len(result["train_losses"]) == 1
        assert result["test_mae_ev"] > 0 and result["settings"]["target"] == "U0_ATOM"
        assert result["settings"]["precision"] == "fp32" and result["settings"]["seed"] == 42

    trainer.cli(argv)  # the same command again: continues from the checkpoints (here: nothing left to train)
    assert "resumed mlp" in capsys.readouterr().out
    again = json.loads((results_dir / "comparison.json").read_text())
    assert again["mlp"]["val_losses"] == comparison["mlp"]["val_losses"]
    assert again["gnn"]["test_loss"] == comparison["gnn"]["test_loss"]
    assert not list(results_dir.glob("*.tmp"))


def test_same_seed_same_results(qm9_data_dir):
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        model = MLP(FLAT_INPUT_DIM, [16], 1)
        runs.append(trainer.train(model, 1e-3, 64, 1, 3, qm9_data_dir, train_subset=256, eval_subset=64)[1:4])
    assert runs[0] == runs[1]


def test_evaluate_model_honours_permute(valid):
    torch.manual_seed(0)
    model = MLP(FLAT_INPUT_DIM, [16], 1)
    loader = GraphLoader(valid[:100], batch_size=32)
    criterion = nn.MSELoss()
    plain = trainer.evaluate_model(model, loader, criterion, permute=False)
    torch.manual_seed(1)
    permuted = trainer.evaluate_model(model, loader, criterion, permute=True)
    torch.manual_seed(1)
    with torch.no_grad():
        total = sum(
            trainer.compute_loss(model, trainer.permute_indices(b), criterion).item() * b.num_graphs for b in loader
        )
    assert permuted == pytest.approx(total / 100, rel=1e-6)
    assert abs(permuted - plain) > 1e-3  # renumbered atoms are other inputs to the MLP


class _ModeRecordingMLP(MLP):
    """An MLP that records whether it was in training mode at every forward pass."""

    def forward(self, x):
        self.modes.append(self.training)
        return super().forward(x)


def test_evaluate_model_runs_in_eval_mode_and_restores_the_mode(valid):
    model = _ModeRecordingMLP(FLAT_INPUT_DIM, [8], 1)
    model.modes = []
    trainer.evaluate_model(model, GraphLoader(valid[:50], batch_size=16), nn.MSELoss(), permute=False)
    assert model.modes == [False] * 4 and model.training


def test_training_returns_and_saves_the_best_validation_weights(qm9_data_dir, tmp_path, monkeypatch):
    """Validation after epoch 2 is made worse than after epoch 1: epoch 1's weights must be returned and saved."""
    real_evaluate = trainer.evaluate
    scripted = iter([1.0, 0.5, 0.9])  # before training, after epoch 1, after epoch 2
    snapshots = []

    def validation(model, *args, **kwargs):
        value = next(scripted, None)
        if value is None:  # the test-set evaluations after training
            return real_evaluate(model, *args, **kwargs)
        snapshots.append(copy.deepcopy(model.state_dict()))
        return value

    monkeypatch.setattr(trainer, "evaluate", validation)
    torch.manual_seed(0)
    model = MLP(FLAT_INPUT_DIM, [16], 1)
    model, _, _, val_losses, info = trainer.train(
        model, 1e-2, 64, 2, 0, qm9_data_dir, train_subset=256, eval_subset=64, results_dir=tmp_path
    )
    assert val_losses == [0.5, 0.9] and info["best_epoch"] == 1 and info["best_val_loss"] == 0.5
    best, last = snapshots[1], snapshots[2]
    assert not all(torch.equal(best[key], last[key]) for key in best)  # epoch 2 did change the weights
    saved = torch.load(tmp_path / "mlp_best.pt", weights_only=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, best[key]) and torch.equal(saved[key], best[key]), key


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_trains_the_mlp_as_well_as_fp32(qm9_data_dir, precision):
    losses = {}
    for name in ("fp32", precision):
        torch.manual_seed(0)
        model = MLP(FLAT_INPUT_DIM, [32], 1)
        losses[name] = trainer.train(
            model, 1e-3, 64, 2, 0, qm9_data_dir, train_subset=512, eval_subset=128, precision=name
        )[3][-1]
    assert losses[precision] == pytest.approx(losses["fp32"], rel=0.1)
