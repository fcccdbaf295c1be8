"""Grades as a table per submission, a CSV (one row per submission) and a JSON with every check."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from common.io import write_json, write_text
from grading.runner import SubmissionResult


def _points(value: float) -> str:
    return f"{value:g}"


def table(result: SubmissionResult) -> str:
    """Question, points earned / possible, and one line per failed check naming the input and the symptom."""
    lines = [f"{result.submission}  (layout: {result.layout}, graded in {result.seconds:g} s)"]
    lines += [f"  note: {note}" for note in result.notes]
    width = max(len(f"{q.id} {q.title}") for q in result.questions)
    for q in result.questions:
        label = f"{q.id} {q.title}"
        lines.append(f"  {label:<{width}}  {_points(q.earned):>5} / {_points(q.points)}")
        for check in q.checks:
            if check.earned < check.points:
                lost = _points(check.points - check.earned)
                lines.append(f"      -{lost:<5} {check.id.split('/', 1)[1]}: {check.message or 'failed'}")
    lines.append(f"  {'total':<{width}}  {_points(result.earned):>5} / {_points(result.points)}")
    return "\n".join(lines)


def csv_text(results: list[SubmissionResult]) -> str:
    """``submission, layout, <question>..., total, possible``: one row per submission."""
    questions = [q.id for q in results[0].questions] if results else []
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["submission", "layout", *questions, "total", "possible"])
    for result in results:
        earned = {q.id: q.earned for q in result.questions}
        writer.writerow(
            [
                result.submission,
                result.layout,
                *(_points(earned[q]) for q in questions),
                _points(result.earned),
                _points(result.points),
            ]
        )
    return buffer.getvalue()


def write_csv(results: list[SubmissionResult], path: str | Path) -> Path:
    return write_text(csv_text(results), path)


def write_results_json(results: list[SubmissionResult], path: str | Path) -> Path:
    """Every submission with every check: id, title, points, earned, passed, message, seconds."""
    return write_json({"submissions": [r.to_json() for r in results]}, path)
