"""Grade student submissions of the course template, question by question.

Usage::

    python -m grading SUBMISSION... [--out grades.csv] [--json grades.json] [--jobs N]

Each SUBMISSION is a folder holding part1/ part2/ part3/ (directly or in its
only subfolder), or a folder of such submissions. Prints a table per
submission; see grading/README.md for the checks and their points.
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from common.cli import make_parser, positive_float, positive_int, run_cli
from common.runs import ensure_writable
from common.runtime import UserError
from grading.questions import QUESTION_IDS, QUESTIONS
from grading.report import table, write_csv, write_results_json
from grading.runner import Limits, grade_all
from grading.submission import find_submissions


def build_parser():
    parser = make_parser("python -m grading", __doc__)
    parser.add_argument(
        "submissions", nargs="+", metavar="SUBMISSION", help="submission folder, or a folder of submission folders"
    )
    parser.add_argument("--out", default="grades.csv", help="CSV file: one row per submission, one column per question")
    parser.add_argument("--json", default="grades.json", help="JSON file with the outcome of every check")
    parser.add_argument("--jobs", type=positive_int, default=1, help="submissions graded at the same time")
    parser.add_argument(
        "--questions",
        nargs="+",
        choices=QUESTION_IDS,
        default=list(QUESTION_IDS),
        metavar="Q",
        help=f"grade only these questions ({', '.join(QUESTION_IDS)})",
    )
    parser.add_argument(
        "--memory", type=positive_float, default=Limits.memory_gib, help="memory limit per grading process, GiB"
    )
    parser.add_argument(
        "--time_factor",
        type=positive_float,
        default=Limits.time_factor,
        help="multiply every check's time limit by this (e.g. 2 on a slow machine)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    submissions = find_submissions(args.submissions)
    for path in (args.out, args.json):
        try:
            ensure_writable(Path(path).parent)
        except UserError:
            raise UserError(f"cannot write {path}; choose another --out / --json") from None
    limits = Limits(memory_gib=args.memory, time_factor=args.time_factor)
    workers = len({q.worker for q in QUESTIONS if q.id in args.questions})
    with tqdm(total=len(submissions) * workers, desc="grading", unit="part", disable=None) as bar:
        results = grade_all(submissions, args.questions, limits, args.jobs, progress=lambda: bar.update())
    for result in results:
        print(table(result), end="\n\n")
    write_csv(results, args.out)
    write_results_json(results, args.json)
    print(f"grades of {len(results)} submission(s) in {args.out} and {args.json}")


if __name__ == "__main__":
    run_cli(main)
