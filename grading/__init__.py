"""Grade student submissions of the course template question by question (``python -m grading``; see README.md)."""
