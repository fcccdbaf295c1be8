#!/bin/bash
# Submit Part 1: the training array (lisa_jobs/part1_train.job, one task per model) and the
# report job (lisa_jobs/part1_report.job), which starts only after every array task has
# finished successfully (--dependency=afterok:<array id>).
#
# Run from the repository root; environment variables (MODELS, EPOCHS, DATA_DIR,
# RESULTS_DIR, ...; see the two job files) reach both jobs, and any arguments are
# passed to both sbatch calls:
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

# --parsable prints "<job id>[;<cluster>]".
train_id="$(sbatch --parsable $array_option "$@" "$jobs_dir/part1_train.job")"
train_id="${train_id%%;*}"
report_id="$(sbatch --parsable --dependency="afterok:$train_id" "$@" "$jobs_dir/part1_report.job")"
report_id="${report_id%%;*}"

echo "submitted training array $train_id and report job $report_id (starts after the array succeeds)"
echo "watch with: squeue -u \$USER; logs in lisa_jobs/logs/"
