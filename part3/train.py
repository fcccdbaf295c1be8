"""Train the MLP and the GNN on QM9 and test both on molecules whose atoms are renumbered.

Usage (from the repository root)::

    python -m part3.train --model both              # 10 epochs each, the README's comparison
    python -m part3.train --model gnn --permutation ../shared/data/qm9/permute.pt
    python -m part3.train --model both --epochs 1 --train_subset 2000 --eval_subset 500   # smoke run

Writes to ``--results_dir``: ``<model>.json`` (per-epoch losses, test and permuted-test
MSE in z-units, MAE in eV), for ``--model both`` also ``comparison.json``; the table
``<run>_results.md`` and the figures ``<run>_validation_curves.png`` and
``<run>_test_vs_permuted.png``; the checkpoint ``<model>_checkpoint.pt`` (every epoch),
the best-validation weights ``<model>_best.pt`` and TensorBoard logs. Rerunning the
same command resumes; a run with other settings is refused unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.tensorboard import SummaryWriter
from torch_geometric.data import Batch
from tqdm import tqdm

from common.cli import add_run_args, make_parser, positive_float, positive_int, run_cli
from common.io import load_checkpoint as read_checkpoint
from common.io import save_torch, write_json, write_text
from common.runs import claim_run
from common.runtime import (
    UserError,
    autocast,
    device_name,
    grad_scaler,
    resolve_device,
    resolve_precision,
    set_seed,
    set_threads,
    start_line,
)
from part3.data import check_data_dir, get_qm9, load_permutation
from part3.features import EDGE_ATTR_DIM, FLAT_INPUT_DIM, Z_ONE_HOT_DIM, get_labels, get_mlp_features, get_node_features
from part3.graphs import TARGETS
from part3.loader import GraphLoader
from part3.model import GNN, MLP
from part3.plots import plot_test_vs_permuted, plot_validation_curves, results_table

MODELS = ("mlp", "gnn")
# Every file a part-3 run writes in --results_dir (relative names): what --overwrite moves aside.
RUN_FILES = (
    [f"{name}{suffix}" for name in MODELS for suffix in (".json", "_checkpoint.pt", "_best.pt")]
    + [f"{run}{suffix}" for run in ("comparison", *MODELS) for suffix in ("_results.md", "_validation_curves.png")]
    + [f"{run}_test_vs_permuted.png" for run in ("comparison", *MODELS)]
    + ["comparison.json", "tensorboard"]
)
_CHECKPOINT_KEYS = ("epoch", "train_losses", "val_losses", "best_val_loss", "best_model", "model", "optimizer")


def permute_indices(molecules: Batch, generator: torch.Generator | None = None) -> Batch:
    """Renumber the atoms of every molecule of a batch at random, never moving an atom to another molecule.

    New node ``i`` is old node ``perm[i]``, where ``perm`` sorts the nodes by ``batch + uniform noise``
    (a random order inside each molecule, as ``batch`` is sorted); edges keep their order and attributes
    and have their endpoints renamed with the inverse permutation: the same molecules, other atom numbers.
    Returns a permuted shallow copy; the input batch is not modified.
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
    """``criterion(prediction [num_graphs], z-scored target [num_graphs])``; the MLP sees the padded,
    flattened molecule, the GNN the graph (one-hot atoms, bonds, one-hot bond types, batch vector)."""
    if isinstance(model, MLP):
        prediction = model(get_mlp_features(molecules))
    elif isinstance(model, GNN):
        prediction = model(get_node_features(molecules), molecules.edge_index, molecules.edge_attr, molecules.batch)
    else:
        raise TypeError(f"expected an MLP or a GNN, got {type(model).__name__}")
    return criterion(prediction.squeeze(-1).float(), get_labels(molecules))


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[Batch],
    criterion: Callable[[Tensor, Tensor], Tensor],
    permute: bool = False,
    generator: torch.Generator | None = None,
    precision: str = "fp32",
) -> float:
    """Mean of ``criterion`` over all molecules of ``loader``, optionally after ``permute_indices``.

    ``criterion`` averages over its batch; batch means are weighted by batch size, so the result
    does not depend on how the molecules are batched. The model's train/eval mode is restored.
    """
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with autocast(model.device, precision):
        for molecules in loader:
            if permute:
                molecules = permute_indices(molecules, generator)
            total += compute_loss(model, molecules, criterion).item() * molecules.num_graphs
            count += molecules.num_graphs
    model.train(was_training)
    if count == 0:
        raise ValueError("cannot evaluate on an empty data loader")
    return total / count


def evaluate_model(
    model: nn.Module, data_loader: Iterable[Batch], criterion: Callable[[Tensor, Tensor], Tensor], permute: bool
) -> float:
    """The template's name for :func:`evaluate` (fp32, the global random generator)."""
    return evaluate(model, data_loader, criterion, permute)


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    criterion: Callable[[Tensor, Tensor], Tensor],
    precision: str = "fp32",
    description: str = "training",
) -> float:
    """One pass over ``loader``, forward pass and loss under ``precision``; returns the mean loss per molecule."""
    model.train()
    scaler = grad_scaler(model.device, precision)
    total, count = 0.0, 0
    for molecules in tqdm(loader, desc=description, leave=False, disable=None):
        optimizer.zero_grad(set_to_none=True)
        with autocast(model.device, precision):
            loss = compute_loss(model, molecules, criterion)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        total += loss.item() * molecules.num_graphs
        count += molecules.num_graphs
    return total / count


def new_history(model: nn.Module, val_loss_before_training: float) -> dict[str, Any]:
    """The training record kept in the checkpoint: per-epoch losses and the best-validation weights so far."""
    return {
        "epoch": 0,
        "train_losses": [],
        "val_losses": [],
        "epoch_seconds": [],
        "best_val_loss": float("inf"),
        "best_epoch": 0,
        "best_model": copy.deepcopy(model.state_dict()),
        "val_loss_before_training": val_loss_before_training,
    }


def save_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, history: dict, shuffle: torch.Generator
) -> None:
    """Everything needed to continue exactly: history, weights, optimizer, shuffling and torch random state."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state()}
    save_torch({**history, **state, "shuffle_generator": shuffle.get_state()}, path)


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, shuffle: torch.Generator) -> dict:
    """Restore what :func:`save_checkpoint` saved into ``model``, ``optimizer`` and ``shuffle``; returns the history."""
    # On the CPU: the random-generator states must stay there; load_state_dict moves the rest to the model.
    checkpoint = read_checkpoint(path, "part3 training", _CHECKPOINT_KEYS, map_location="cpu")
    try:
        model.load_state_dict(checkpoint.pop("model"))
        optimizer.load_state_dict(checkpoint.pop("optimizer"))
        shuffle.set_state(checkpoint.pop("shuffle_generator"))
        torch.set_rng_state(checkpoint.pop("torch_rng"))
    except (RuntimeError, ValueError, KeyError, TypeError):
        raise UserError(f"{path} does not fit this model; delete it or choose another --results_dir") from None
    return checkpoint


def fit(
    model: nn.Module,
    train_loader: GraphLoader,
    valid_loader: GraphLoader,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    history: dict[str, Any],
    checkpoint_path: Path | None = None,
    precision: str = "fp32",
) -> dict[str, Any]:
    """Train from ``history["epoch"]`` to ``epochs`` on the MSE, validating after every epoch;
    leaves the best-validation weights in ``model`` and returns the history."""
    name, criterion = type(model).__name__.lower(), nn.MSELoss()
    writer = None if checkpoint_path is None else SummaryWriter(str(checkpoint_path.parent / "tensorboard" / name))
    for epoch in range(history["epoch"] + 1, epochs + 1):
        start = time.perf_counter()
        train_loss = train_one_epoch(model, train_loader, optimizer, criterion, precision, f"{name} {epoch}/{epochs}")
        val_loss = evaluate(model, valid_loader, criterion, precision=precision)
        history["epoch_seconds"].append(time.perf_counter() - start)
        history["train_losses"].append(train_loss)
        history["val_losses"].append(val_loss)
        history["epoch"] = epoch
        if val_loss < history["best_val_loss"]:
            history.update(best_val_loss=val_loss, best_epoch=epoch, best_model=copy.deepcopy(model.state_dict()))
        print(f"{name} epoch {epoch}/{epochs}: train MSE {train_loss:.5f}, validation MSE {val_loss:.5f}")
        if checkpoint_path is not None:
            writer.add_scalar("loss/train", train_loss, epoch)
            writer.add_scalar("loss/validation", val_loss, epoch)
            save_checkpoint(checkpoint_path, model, optimizer, history, train_loader.generator)
    if writer is not None:
        writer.close()
    model.load_state_dict(history["best_model"])
    return history


def evaluate_test_set(
    model: nn.Module, loader: GraphLoader, target_std: float, seed: int, precision: str
) -> dict[str, float]:
    """Test MSE (z-units) and MAE (eV) on the molecules as stored and with their atoms renumbered."""

    def permutations() -> torch.Generator:  # the same atom permutations for the MSE and the MAE
        return torch.Generator(device=model.device).manual_seed(seed)

    mse, mae = nn.MSELoss(), nn.L1Loss()
    return {
        "test_loss": evaluate(model, loader, mse, precision=precision),
        "permuted_test_loss": evaluate(model, loader, mse, True, permutations(), precision),
        "test_mae_ev": evaluate(model, loader, mae, precision=precision) * target_std,
        "permuted_test_mae_ev": evaluate(model, loader, mae, True, permutations(), precision) * target_std,
    }


def qm9_loaders(
    data_dir: str | Path,
    device: torch.device,
    batch_size: int,
    seed: int,
    target: str = "U0_ATOM",
    permutation: str | Path | None = None,
    train_subset: int | None = None,
    eval_subset: int | None = None,
) -> tuple[GraphLoader, GraphLoader, GraphLoader]:
    """Training (shuffled by a generator seeded with ``seed``), validation and test loaders of ``get_qm9``'s
    splits; ``train_subset`` / ``eval_subset`` keep the first N training / validation and test molecules."""
    splits = get_qm9(data_dir, device, target, permutation, seed)
    subsets = (train_subset, eval_subset, eval_subset)
    train_set, valid_set, test_set = (split[:n] if n else split for split, n in zip(splits, subsets))
    shuffle = torch.Generator().manual_seed(seed)
    return (
        GraphLoader(train_set, batch_size, True, shuffle),
        GraphLoader(valid_set, batch_size),
        GraphLoader(test_set, batch_size),
    )


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
    precision: str = "fp32",
) -> tuple[nn.Module, float, float, list[float], dict[str, Any]]:
    """The template's training cycle: Adam (amsgrad) on the MSE of the z-scored target, best-validation model.

    The seed fixes the split (unless ``permutation`` is given), the shuffling and the test permutations;
    ``*_subset`` keep the first N molecules (:func:`qm9_loaders`). With a ``results_dir`` (the caller applies
    the run-folder rule), a checkpoint there is continued; checkpoint, best weights and TensorBoard logs go there.

    Returns ``(model, test_loss, permuted_test_loss, val_losses, logging_info)``: the best-validation model,
    its test MSE on the original and on atom-permuted molecules (z-units), the validation MSE after each
    epoch, and a dict with the training curves, MAEs in eV, timings and target statistics.
    """
    set_seed(seed)
    loaders = qm9_loaders(data_dir, model.device, batch_size, seed, target, permutation, train_subset, eval_subset)
    train_loader, valid_loader, test_loader = loaders
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, amsgrad=True)

    name = type(model).__name__.lower()
    checkpoint_path = None if results_dir is None else Path(results_dir) / f"{name}_checkpoint.pt"
    if checkpoint_path is not None and checkpoint_path.is_file():
        history = load_checkpoint(checkpoint_path, model, optimizer, train_loader.generator)
        print(f"resumed {name} from {checkpoint_path} after epoch {history['epoch']}")
    else:
        history = new_history(model, evaluate(model, valid_loader, nn.MSELoss(), precision=precision))
    history = fit(model, train_loader, valid_loader, optimizer, epochs, history, checkpoint_path, precision)
    if checkpoint_path is not None:
        save_torch(history["best_model"], checkpoint_path.with_name(f"{name}_best.pt"))

    train_set = train_loader.dataset
    results = evaluate_test_set(model, test_loader, train_set.target_std, seed, precision)
    logging_info = {key: value for key, value in history.items() if key not in ("best_model", "epoch")} | results
    logging_info |= {"target": target, "target_mean_ev": train_set.target_mean, "target_std_ev": train_set.target_std}
    logging_info |= {key: len(loader.dataset) for key, loader in zip(("num_train", "num_valid", "num_test"), loaders)}
    logging_info["num_parameters"] = sum(p.numel() for p in model.parameters())
    return model, results["test_loss"], results["permuted_test_loss"], history["val_losses"], logging_info


def build_model(name: str, mlp_hidden_dims: Sequence[int], gnn_hidden_dims: int, gnn_num_blocks: int) -> nn.Module:
    """The MLP on ``FLAT_INPUT_DIM`` features or the GNN on 5 atom and 4 bond features, one output."""
    if name == "mlp":
        return MLP(FLAT_INPUT_DIM, list(mlp_hidden_dims), 1)
    if name == "gnn":
        return GNN(Z_ONE_HOT_DIM, EDGE_ATTR_DIM, gnn_hidden_dims, 1, gnn_num_blocks)
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")


def run_settings(args: argparse.Namespace, precision: str) -> dict[str, Any]:
    """The settings that change a run's results: a results folder resumes only a run with equal ones."""
    settings = {key: getattr(args, key) for key in ("model", "seed", "permutation", "target", "train_subset")}
    settings |= {key: getattr(args, key) for key in ("eval_subset", "epochs", "lr", "batch_size")}
    if args.model in ("mlp", "both"):
        settings["mlp_hidden_dims"] = args.mlp_hidden_dims
    if args.model in ("gnn", "both"):
        settings |= {"gnn_hidden_dims": args.gnn_hidden_dims, "gnn_num_blocks": args.gnn_num_blocks}
    return settings | {"precision": precision}


def write_summary(results: dict[str, dict[str, Any]], results_dir: Path, run: str) -> None:
    """``comparison.json`` (for both models), the Markdown table and the two figures of a run."""
    if len(results) > 1:
        write_json(results, results_dir / "comparison.json")
    write_text(results_table(results), results_dir / f"{run}_results.md")
    plot_validation_curves(results, results_dir / f"{run}_validation_curves.png")
    plot_test_vs_permuted(results, results_dir / f"{run}_test_vs_permuted.png")
    print(f"results written to {results_dir.resolve()}")


def main(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Check every input, claim the results folder, train and test the chosen model(s), write the results."""
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision or "fp32", device)  # fp32 on every device: see part3/README.md
    if precision != "fp32" and args.model != "mlp":
        raise UserError(f"--precision {precision} works only with --model mlp (the GNN's MFConv fails under autocast)")
    set_threads(args.threads)
    if args.permutation is not None:
        load_permutation(args.permutation)  # a bad file fails now, not after the first model
    check_data_dir(args.data_dir)
    results_dir, settings = Path(args.results_dir), run_settings(args, precision)
    claim_run(results_dir, settings, args.overwrite, owned=RUN_FILES)
    start_line("python -m part3.train", device, precision, results_dir)

    results: dict[str, dict[str, Any]] = {}
    for name in MODELS if args.model == "both" else (args.model,):
        set_seed(args.seed)
        model = build_model(name, args.mlp_hidden_dims, args.gnn_hidden_dims, args.gnn_num_blocks).to(device)
        _, _, _, _, info = train(
            model, args.lr, args.batch_size, args.epochs, args.seed, args.data_dir, target=args.target,
            permutation=args.permutation, train_subset=args.train_subset, eval_subset=args.eval_subset,
            results_dir=results_dir, precision=precision,
        )  # fmt: skip
        results[name] = {"model": name, "settings": settings | {"device": device_name(device)}, **info}
        write_json(results[name], results_dir / f"{name}.json")
        print(
            f"{name}: test MSE {info['test_loss']:.5f}, permuted test MSE {info['permuted_test_loss']:.5f} "
            f"(z-units); test MAE {info['test_mae_ev']:.4f} eV, permuted {info['permuted_test_mae_ev']:.4f} eV"
        )
    write_summary(results, results_dir, "comparison" if args.model == "both" else args.model)
    return results


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = make_parser("python -m part3.train", __doc__)
    parser.add_argument("--model", default="both", choices=[*MODELS, "both"], help="model(s) to train")
    parser.add_argument("--mlp_hidden_dims", default=[128, 128, 128, 128], type=positive_int, nargs="*",
                        help="hidden widths of the MLP (none: a linear model)")  # fmt: skip
    parser.add_argument("--gnn_hidden_dims", default=64, type=positive_int, help="node embedding width of the GNN")
    parser.add_argument("--gnn_num_blocks", default=2, type=positive_int, help="(RGCNConv, MFConv) blocks of the GNN")
    parser.add_argument("--lr", default=1e-3, type=positive_float, help="Adam (amsgrad) learning rate")
    parser.add_argument("--batch_size", default=128, type=positive_int, help="molecules per batch")
    parser.add_argument("--epochs", default=10, type=positive_int, help="training epochs")
    parser.add_argument("--target", default="U0_ATOM", choices=TARGETS,
                        help="U0_ATOM: atomization energy at 0 K; U0: internal energy at 0 K")  # fmt: skip
    parser.add_argument("--permutation", default=None,
                        help="torch.save'd permutation of the 130,831 molecules fixing the split, e.g. the "
                        "course's permute.pt; None: drawn with --seed")  # fmt: skip
    parser.add_argument("--data_dir", default="data/", help="folder of the processed QM9 cache")
    parser.add_argument("--train_subset", default=None, type=positive_int,
                        help="train on the first N training molecules only; None: all")  # fmt: skip
    parser.add_argument("--eval_subset", default=None, type=positive_int,
                        help="validate and test on the first N molecules of each split only; None: all")  # fmt: skip
    add_run_args(parser, results_dir="results/part3", seed=42)
    # Accepted and ignored: a folder with the same settings resumes anyway (older job files pass it).
    parser.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def cli(argv: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Command-line entry point: bad input ends with one line on stderr (exit 2)."""
    return run_cli(lambda: main(parse_args(argv)))


if __name__ == "__main__":
    cli()
