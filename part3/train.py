"""Train the MLP and the GNN on QM9 and test both on molecules whose atoms are renumbered.

Usage (from the repository root)::

    python -m part3.train --model both              # 10 epochs each, the README's comparison
    python -m part3.train --model gnn --permutation ../shared/data/qm9/permute.pt
    python -m part3.train --model both --epochs 1 --train_subset 2000 --eval_subset 500   # smoke run

Writes ``<results_dir>/<model>.json`` (per-epoch losses, test and permuted-test
MSE in z-units, MAE in eV), for ``--model both`` also ``comparison.json``, a
Markdown table ``<run>_results.md`` and the figures
``<run>_validation_curves.png`` and ``<run>_test_vs_permuted.png``;
checkpoints (``<model>_checkpoint.pt``, resumable with ``--resume``) and
TensorBoard logs go to the same folder.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from part3.data import (
    EDGE_ATTR_DIM,
    FLAT_INPUT_DIM,
    TARGETS,
    Z_ONE_HOT_DIM,
    GraphLoader,
    get_labels,
    get_mlp_features,
    get_node_features,
    get_qm9,
)
from part3.model import GNN, MLP
from part3.plots import plot_test_vs_permuted, plot_validation_curves, results_table

MODELS = ("mlp", "gnn")


def permute_indices(molecules: Batch, generator: torch.Generator | None = None) -> Batch:
    """Renumber the atoms of every molecule of a batch at random, never moving an atom to another molecule.

    New node ``i`` is old node ``perm[i]``, where ``perm`` sorts the nodes by
    ``batch + uniform noise`` (a random order inside each molecule, because
    ``batch`` is sorted); edges keep their order and attributes and have their
    endpoints renamed with the inverse permutation, so the result is the same
    set of molecules, only with different atom numbers.

    Args:
        molecules: a batch with ``x``, ``edge_index``, ``batch`` and optionally ``z``.
        generator: random generator on the batch's device (default: the global one).

    Returns:
        A permuted shallow copy; the input batch is not modified.
    """
    batch = molecules.batch
    noise = torch.rand(batch.numel(), generator=generator, device=batch.device, dtype=torch.float64)
    perm = torch.argsort(batch.to(torch.float64) + noise)
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(perm.numel(), device=perm.device)

    permuted = copy.copy(molecules)
    permuted.x = molecules.x[perm]
    permuted.edge_index = inverse[molecules.edge_index]
    if getattr(molecules, "z", None) is not None:
        permuted.z = molecules.z[perm]
    return permuted


def compute_loss(model: nn.Module, molecules: Batch, criterion: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """``criterion(prediction [num_graphs], z-scored target [num_graphs])`` for an MLP or a GNN.

    The MLP sees the padded, flattened molecule (``get_mlp_features``); the GNN
    sees the graph (one-hot atoms, bonds, one-hot bond types, batch vector).
    """
    if isinstance(model, MLP):
        prediction = model(get_mlp_features(molecules))
    elif isinstance(model, GNN):
        prediction = model(get_node_features(molecules), molecules.edge_index, molecules.edge_attr, molecules.batch)
    else:
        raise TypeError(f"expected an MLP or a GNN, got {type(model).__name__}")
    return criterion(prediction.squeeze(-1), get_labels(molecules))


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    data_loader: Iterable[Batch],
    criterion: Callable[[Tensor, Tensor], Tensor],
    permute: bool,
    generator: torch.Generator | None = None,
) -> float:
    """Mean of ``criterion`` over all molecules of ``data_loader``, optionally after ``permute_indices``.

    ``criterion`` must average over its batch (``reduction="mean"``); batch
    means are weighted by batch size, so the result does not depend on how the
    molecules are batched.
    """
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for molecules in data_loader:
        if permute:
            molecules = permute_indices(molecules, generator)
        total += compute_loss(model, molecules, criterion).item() * molecules.num_graphs
        count += molecules.num_graphs
    model.train(was_training)
    if count == 0:
        raise ValueError("cannot evaluate on an empty data loader")
    return total / count


def _save_atomically(obj: Any, path: Path) -> None:
    temporary = path.with_name(path.name + ".tmp")
    torch.save(obj, temporary)
    os.replace(temporary, path)


def train(
    model: nn.Module,
    lr: float,
    batch_size: int,
    epochs: int,
    seed: int,
    data_dir: str | Path,
    *,
    target: str = "U0_ATOM",
    permutation: str | Path | None = None,
    train_subset: int | None = None,
    eval_subset: int | None = None,
    results_dir: str | Path | None = None,
    resume: bool = False,
) -> tuple[nn.Module, float, float, list[float], dict[str, Any]]:
    """Train with Adam (amsgrad) on the MSE of the z-scored target; keep the best-validation model.

    Args:
        model: an ``MLP`` (input ``FLAT_INPUT_DIM``) or a ``GNN``, already on its device.
        lr, batch_size, epochs, seed: optimisation settings; the seed fixes the
            split (unless ``permutation`` is given), the shuffling and the test permutations.
        data_dir: folder of the cached dataset.
        target: ``"U0_ATOM"`` or ``"U0"``.
        permutation: file with the split permutation (e.g. the course's ``permute.pt``).
        train_subset, eval_subset: use only the first N training / validation and test molecules.
        results_dir: where the checkpoint and TensorBoard logs go (none if ``None``).
        resume: continue from the checkpoint in ``results_dir`` if there is one.

    Returns:
        ``(model, test_loss, permuted_test_loss, val_losses, logging_info)``: the
        best-validation model, its test MSE on the original and on atom-permuted
        molecules (z-units), the validation MSE after each epoch, and a dict with
        the training curves, MAEs in eV, timings and target statistics.
    """
    torch.manual_seed(seed)
    device = model.device
    train_set, valid_set, test_set = get_qm9(data_dir, device, target=target, permutation=permutation, seed=seed)
    if train_subset is not None:
        train_set = train_set[:train_subset]
    if eval_subset is not None:
        valid_set, test_set = valid_set[:eval_subset], test_set[:eval_subset]
    shuffle_generator = torch.Generator().manual_seed(seed)
    train_loader = GraphLoader(train_set, batch_size, shuffle=True, generator=shuffle_generator)
    valid_loader = GraphLoader(valid_set, batch_size)
    test_loader = GraphLoader(test_set, batch_size)

    criterion = nn.MSELoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, amsgrad=True)
    name = type(model).__name__.lower()
    checkpoint_path = writer = None
    if results_dir is not None:
        results_dir = Path(results_dir)
        results_dir.mkdir(parents=True, exist_ok=True)
        checkpoint_path = results_dir / f"{name}_checkpoint.pt"
        writer = SummaryWriter(str(results_dir / "tensorboard" / name))

    state: dict[str, Any] = {
        "epoch": 0,
        "train_losses": [],
        "val_losses": [],
        "epoch_seconds": [],
        "best_val_loss": float("inf"),
        "best_epoch": 0,
        "best_model": copy.deepcopy(model.state_dict()),
        "val_loss_before_training": evaluate_model(model, valid_loader, criterion, permute=False),
    }
    if resume and checkpoint_path is not None and checkpoint_path.is_file():
        checkpoint = torch.load(checkpoint_path, map_location=device, weights_only=False)
        model.load_state_dict(checkpoint.pop("model"))
        optimizer.load_state_dict(checkpoint.pop("optimizer"))
        shuffle_generator.set_state(checkpoint.pop("shuffle_generator"))
        torch.set_rng_state(checkpoint.pop("torch_rng"))
        state = checkpoint
        print(f"resumed {name} from {checkpoint_path} after epoch {state['epoch']}")

    model.train()
    for epoch in range(state["epoch"] + 1, epochs + 1):
        start = time.perf_counter()
        total, count = 0.0, 0
        for molecules in tqdm(train_loader, desc=f"{name} epoch {epoch}/{epochs}", leave=False, disable=None):
            optimizer.zero_grad(set_to_none=True)
            loss = compute_loss(model, molecules, criterion)
            loss.backward()
            optimizer.step()
            total += loss.item() * molecules.num_graphs
            count += molecules.num_graphs
        train_loss = total / count
        val_loss = evaluate_model(model, valid_loader, criterion, permute=False)
        state["epoch_seconds"].append(time.perf_counter() - start)
        state["train_losses"].append(train_loss)
        state["val_losses"].append(val_loss)
        state["epoch"] = epoch
        if val_loss < state["best_val_loss"]:
            state["best_val_loss"], state["best_epoch"] = val_loss, epoch
            state["best_model"] = copy.deepcopy(model.state_dict())
        print(f"{name} epoch {epoch}/{epochs}: train MSE {train_loss:.5f}, validation MSE {val_loss:.5f}")
        if writer is not None:
            writer.add_scalar("loss/train", train_loss, epoch)
            writer.add_scalar("loss/validation", val_loss, epoch)
        if checkpoint_path is not None:
            _save_atomically(
                {
                    **state,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "shuffle_generator": shuffle_generator.get_state(),
                    "torch_rng": torch.get_rng_state(),
                },
                checkpoint_path,
            )
    if writer is not None:
        writer.close()

    model.load_state_dict(state["best_model"])
    std = train_set.target_std
    def permutation_generator() -> torch.Generator:
        # The same seeded atom permutations for the MSE and the MAE pass.
        return torch.Generator(device=device).manual_seed(seed)

    if checkpoint_path is not None:
        _save_atomically(state["best_model"], results_dir / f"{name}_best.pt")
    test_loss = evaluate_model(model, test_loader, criterion, permute=False)
    permuted_test_loss = evaluate_model(model, test_loader, criterion, permute=True, generator=permutation_generator())
    mae = nn.L1Loss()
    logging_info = {
        "train_losses": state["train_losses"],
        "val_losses": state["val_losses"],
        "val_loss_before_training": state["val_loss_before_training"],
        "epoch_seconds": state["epoch_seconds"],
        "best_epoch": state["best_epoch"],
        "best_val_loss": state["best_val_loss"],
        "test_loss": test_loss,
        "permuted_test_loss": permuted_test_loss,
        "test_mae_ev": evaluate_model(model, test_loader, mae, permute=False) * std,
        "permuted_test_mae_ev": evaluate_model(model, test_loader, mae, permute=True, generator=permutation_generator())
        * std,
        "target": target,
        "target_mean_ev": train_set.target_mean,
        "target_std_ev": std,
        "num_train": len(train_set),
        "num_valid": len(valid_set),
        "num_test": len(test_set),
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }
    return model, test_loss, permuted_test_loss, state["val_losses"], logging_info


def build_model(name: str, mlp_hidden_dims: Sequence[int], gnn_hidden_dims: int, gnn_num_blocks: int) -> nn.Module:
    """The MLP on ``FLAT_INPUT_DIM`` features or the GNN on 5 atom and 4 bond features, one output."""
    if name == "mlp":
        return MLP(FLAT_INPUT_DIM, list(mlp_hidden_dims), 1)
    if name == "gnn":
        return GNN(
            n_node_features=Z_ONE_HOT_DIM,
            n_edge_features=EDGE_ATTR_DIM,
            n_hidden=gnn_hidden_dims,
            n_output=1,
            num_convolution_blocks=gnn_num_blocks,
        )
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")


def main(
    model: str = "both",
    mlp_hidden_dims: Sequence[int] = (128, 128, 128, 128),
    gnn_hidden_dims: int = 64,
    gnn_num_blocks: int = 2,
    lr: float = 1e-3,
    batch_size: int = 128,
    epochs: int = 10,
    seed: int = 42,
    data_dir: str | Path = "data/",
    target: str = "U0_ATOM",
    permutation: str | Path | None = None,
    results_dir: str | Path = "results/part3",
    device: str | None = None,
    train_subset: int | None = None,
    eval_subset: int | None = None,
    resume: bool = False,
    threads: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Train the chosen model(s), write their results JSON and figures, and return the results by model name."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be positive, got {threads}")
        torch.set_num_threads(threads)
    names = MODELS if model == "both" else (model,)
    for value, flag in ((epochs, "--epochs"), (batch_size, "--batch_size"), (train_subset, "--train_subset"),
                        (eval_subset, "--eval_subset")):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be positive, got {value}")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "mlp_hidden_dims": list(mlp_hidden_dims),
        "gnn_hidden_dims": gnn_hidden_dims,
        "gnn_num_blocks": gnn_num_blocks,
        "lr": lr,
        "batch_size": batch_size,
        "epochs": epochs,
        "seed": seed,
        "target": target,
        "permutation": None if permutation is None else str(permutation),
        "train_subset": train_subset,
        "eval_subset": eval_subset,
        "device": str(device),
    }

    results: dict[str, dict[str, Any]] = {}
    for name in names:
        torch.manual_seed(seed)
        network = build_model(name, mlp_hidden_dims, gnn_hidden_dims, gnn_num_blocks).to(device)
        _, test_loss, permuted_test_loss, _, info = train(
            network, lr, batch_size, epochs, seed, data_dir,
            target=target, permutation=permutation, train_subset=train_subset, eval_subset=eval_subset,
            results_dir=results_dir, resume=resume,
        )
        results[name] = {"model": name, "settings": settings, **info}
        (results_dir / f"{name}.json").write_text(json.dumps(results[name], indent=2))
        print(
            f"{name}: test MSE {test_loss:.5f}, permuted test MSE {permuted_test_loss:.5f} (z-units); "
            f"test MAE {info['test_mae_ev']:.4f} eV, permuted {info['permuted_test_mae_ev']:.4f} eV"
        )

    run = "comparison" if model == "both" else model
    if model == "both":
        (results_dir / "comparison.json").write_text(json.dumps(results, indent=2))
    (results_dir / f"{run}_results.md").write_text(results_table(results))
    plot_validation_curves(results, results_dir / f"{run}_validation_curves.png")
    plot_test_vs_permuted(results, results_dir / f"{run}_test_vs_permuted.png")
    print(f"results written to {results_dir.resolve()}")
    return results


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--model", default="both", choices=[*MODELS, "both"], help="model(s) to train")
    parser.add_argument("--mlp_hidden_dims", default=[128, 128, 128, 128], type=int, nargs="*",
                        help="hidden widths of the MLP (none: a linear model)")
    parser.add_argument("--gnn_hidden_dims", default=64, type=int, help="node embedding width of the GNN")
    parser.add_argument("--gnn_num_blocks", default=2, type=int, help="number of (RGCNConv, MFConv) blocks")
    parser.add_argument("--lr", default=1e-3, type=float, help="Adam learning rate")
    parser.add_argument("--batch_size", default=128, type=int, help="molecules per batch")
    parser.add_argument("--epochs", default=10, type=int, help="training epochs")
    parser.add_argument("--seed", default=42, type=int, help="seed of the split, initialisation and shuffling")
    parser.add_argument("--data_dir", default="data/", help="folder for the processed QM9 cache")
    parser.add_argument("--target", default="U0_ATOM", choices=TARGETS,
                        help="U0_ATOM: atomization energy at 0 K; U0: internal energy at 0 K")
    parser.add_argument("--permutation", default=None,
                        help="file with the split permutation (e.g. the course's permute.pt); default: seeded")
    parser.add_argument("--results_dir", default="results/part3", help="folder for results, figures, checkpoints")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--train_subset", default=None, type=int, help="train on the first N training molecules")
    parser.add_argument("--eval_subset", default=None, type=int,
                        help="validate and test on the first N molecules of each split")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoints in --results_dir")
    parser.add_argument("--threads", default=None, type=int,
                        help="CPU threads for PyTorch (default: PyTorch's choice; 1 is fastest on a busy machine)")
    return parser.parse_args(argv)


def cli(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point: bad input ends with a one-line error."""
    args = parse_args(argv)
    try:
        main(**vars(args))
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    cli()
