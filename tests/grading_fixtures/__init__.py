"""Template-shaped copies of our implementation, for the grader's tests (see builder.py)."""
