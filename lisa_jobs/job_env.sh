# Sourced by every job file in lisa_jobs/ (except the installer) once it has changed to the repository root.
#
# Activates the Python environment:
#   VENV=/path/to/venv     use this virtual environment (source $VENV/bin/activate), e.g. off the cluster;
#   otherwise              load the cluster's modules (MODULES, default: the 2021 stack
#                          with Anaconda3/2021.05, as on Lisa) when the `module` command
#                          exists, then activate the conda environment ${CONDA_ENV:-dl2021}
#                          that lisa_jobs/install_environment.job creates.
# and defines
#   run                    prints a command to the log and runs it (DRY_RUN=1: prints only);
#   require_gpu            ends the job with one line when no CUDA GPU is usable (unless DEVICE=cpu or mps);
#   results_dir_for        the default results folder, named after the settings given (see below);
#   part1_results_dir      Part 1's default results folder (shared by the training array and the report).
# THREADS defaults to the CPUs SLURM gave the job; the training jobs pass it as --threads.

# The module and conda scripts read unset variables, so nounset is off while they run.
set +u
if [[ -n "${VENV:-}" ]]; then
    if [[ ! -f "$VENV/bin/activate" ]]; then
        echo "error: VENV=$VENV has no bin/activate; point VENV at a Python virtual environment" >&2
        exit 1
    fi
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

# OVERWRITE=1 becomes --overwrite (through ${OVERWRITE:+--overwrite}); 0 or unset: no flag.
case "${OVERWRITE:-}" in
    "" | 0) OVERWRITE="" ;;
    1) ;;
    *)
        echo "error: OVERWRITE must be 1 (move a run with other settings aside) or unset, got '$OVERWRITE'" >&2
        exit 1
        ;;
esac

# One thread pool per CPU SLURM gave us, not per core of the whole node.
THREADS="${THREADS:-${SLURM_CPUS_PER_TASK:-}}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-${THREADS:-1}}"
# Unbuffered output, so that `tail -f` on the log shows progress as it happens.
export PYTHONUNBUFFERED=1

echo "job ${SLURM_JOB_ID:-none} (${SLURM_JOB_NAME:-interactive}) on $(hostname) at $(date -Is)"
echo "repository: $(pwd)  python: $(command -v python)"

run() {
    printf '+'
    printf ' %q' "$@"
    printf '\n'
    if [[ -z "${DRY_RUN:-}" ]]; then
        "$@"
    fi
}

# A GPU job on a node without a usable GPU would otherwise train on the CPU, for days, without a word.
require_gpu() {
    case "${DEVICE:-}" in
        cpu | mps) return 0 ;;
    esac
    if [[ -n "${DRY_RUN:-}" ]]; then
        echo "dry run: not checking for a GPU"
        return 0
    fi
    local available
    if ! available="$(python -c 'import torch; print(torch.cuda.is_available())' 2>&1)"; then
        echo "error: $(command -v python) cannot import torch (${available##*$'\n'});" \
            "create the environment with lisa_jobs/install_environment.job" >&2
        exit 1
    fi
    if [[ "${available##*$'\n'}" != True ]]; then  # the last line: warnings may come before it
        echo "error: no usable CUDA GPU on $(hostname) (CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-unset});" \
            "request one with --gres=gpu:1, check the CUDA build with lisa_jobs/install_environment.job," \
            "or set DEVICE=cpu to run on the CPU" >&2
        exit 1
    fi
}

# results_dir_for BASE VAR...: BASE followed by _<var>-<value> for every VAR that is set, e.g.
# results/part1_epochs-1_train_subset-1000. The scripts refuse a folder holding a run with other
# settings, so each combination of settings gets its own folder, and the same settings name the same
# folder again, so a resubmitted job resumes. A path contributes its file name.
results_dir_for() {
    local dir="$1" name value
    shift
    for name in "$@"; do
        value="${!name:-}"
        if [[ -n "$value" ]]; then
            value="${value##*/}"
            dir+="_${name,,}-${value//[^A-Za-z0-9.+-]/-}"
        fi
    done
    printf '%s\n' "$dir"
}

part1_results_dir() {
    results_dir_for results/part1 EPOCHS LR BATCH_SIZE SEED TRAIN_SUBSET VAL_SUBSET TEST_SUBSET PRECISION
}
