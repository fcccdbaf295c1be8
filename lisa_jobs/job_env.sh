# Sourced by every job file in lisa_jobs/ once it has changed to the repository root.
#
# Activates the Python environment:
#   VENV=/path/to/venv     use this virtual environment (source $VENV/bin/activate);
#   otherwise              load the cluster's modules (MODULES, default: the 2021 stack
#                          with Anaconda3/2021.05, as on Lisa) when the `module` command
#                          exists, then activate the conda environment ${CONDA_ENV:-dl2021}
#                          that lisa_jobs/install_environment.job creates.
# and defines `run`, which prints a command to the log and runs it (DRY_RUN=1: prints only).

# The module and conda scripts read unset variables, so nounset is off while they run.
set +u
if [[ -n "${VENV:-}" ]]; then
    source "$VENV/bin/activate"
else
    if command -v module > /dev/null 2>&1; then
        module purge
        for m in ${MODULES:-2021 Anaconda3/2021.05}; do
            module load "$m"
        done
    fi
    if ! command -v conda > /dev/null 2>&1; then
        echo "error: conda not found; set MODULES to the modules that provide it, or VENV to a virtual environment" >&2
        exit 1
    fi
    source activate "${CONDA_ENV:-dl2021}"
fi
set -u

# One thread pool per CPU SLURM gave us, not per core of the whole node.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}"
# Unbuffered output, so that `tail -f` on the log shows progress as it happens.
export PYTHONUNBUFFERED=1

echo "job ${SLURM_JOB_ID:-none} (${SLURM_JOB_NAME:-interactive}) on $(hostname) at $(date -Is)"
echo "repository: $(pwd)  python: $(command -v python)"

run() {
    printf '+'; printf ' %q' "$@"; printf '\n'
    if [[ -z "${DRY_RUN:-}" ]]; then
        "$@"
    fi
}
