"""Figure of the per-epoch training curves of the text model."""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_training_curves(history: list[dict], path: str | os.PathLike, title: str = "") -> None:
    """Save loss and accuracy per epoch (``history`` entries have ``epoch``, ``loss``, ``accuracy``) as a PNG."""
    epochs = [entry["epoch"] for entry in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4))
    ax_loss.plot(epochs, [entry["loss"] for entry in history], marker="o")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy loss (train)")
    ax_acc.plot(epochs, [entry["accuracy"] for entry in history], marker="o", color="tab:green")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("next-character accuracy (train)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        if len(epochs) < 15:
            ax.set_xticks(epochs)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
