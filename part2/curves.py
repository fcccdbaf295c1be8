"""Former name of ``part2.plots``, kept only until ``part2.train`` and the READMEs use ``part2.plots``; then delete."""

from common.cli import run_cli
from part2.plots import main, plot_results_dir, plot_training_curves

__all__ = ["main", "plot_results_dir", "plot_training_curves"]

if __name__ == "__main__":
    run_cli(main)
