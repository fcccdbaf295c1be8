#!/bin/bash
# Submit Part 1 as three chained jobs:
#   1. lisa_jobs/prepare_data.job: CIFAR-10 decoded once (and QM9 processed for Part 3);
#   2. lisa_jobs/part1_train.job, one array task per model, once 1. has succeeded
#      (--dependency=afterok:<id>), so the tasks never fetch CIFAR-10 at the same time;
#   3. lisa_jobs/part1_report.job, once every array task has succeeded.
#
# Run from the repository root; environment variables (MODELS, EPOCHS, DATA_DIR,
# RESULTS_DIR, ...; see the job files) reach all three jobs, and any arguments are
# passed to every sbatch call. PREPARE=0 skips step 1 when the data is ready.
#     bash lisa_jobs/submit_part1.sh
#     MODELS="resnet18 resnet34" bash lisa_jobs/submit_part1.sh --time=06:00:00
set -euo pipefail
jobs_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# The job files write their logs to lisa_jobs/logs/ relative to the submission folder.
if [[ ! -d lisa_jobs/logs ]]; then
    echo "error: no lisa_jobs/logs/ in $PWD; run this script from the repository root" >&2
    exit 1
fi

# One array task per model in MODELS; without MODELS the job file's own --array applies.
array_option=""
if [[ -n "${MODELS:-}" ]]; then
    read -ra models <<< "$MODELS"
    array_option="--array=0-$(( ${#models[@]} - 1 ))"
fi

# `sbatch --parsable` prints "<job id>[;<cluster>]".
submit() {
    local id
    id="$(sbatch --parsable "$@")"
    printf '%s\n' "${id%%;*}"
}

train_dependency=""
prepared=""
if [[ "${PREPARE:-1}" != 0 ]]; then
    prepare_id="$(submit "$@" "$jobs_dir/prepare_data.job")"
    train_dependency="--dependency=afterok:$prepare_id"
    prepared="data preparation $prepare_id, "
fi
train_id="$(submit $train_dependency $array_option "$@" "$jobs_dir/part1_train.job")"
report_id="$(submit --dependency="afterok:$train_id" "$@" "$jobs_dir/part1_report.job")"

echo "submitted ${prepared}training array $train_id and report job $report_id (each starts after the previous succeeds)"
echo "watch with: squeue -u \$USER; logs in lisa_jobs/logs/"
