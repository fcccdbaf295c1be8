"""Helpers shared by the three parts: one place per concern.

- ``common.io``: atomic writes (JSON, text, torch files) and checkpoint loading with a clear error.
- ``common.runs``: the run-folder rule (resume only with identical settings, otherwise refuse or move aside).
- ``common.runtime``: device, precision (autocast), seeding, threads and the one-line start message.
- ``common.cli``: argparse conventions and the error/interrupt handling of every entry point.
- ``common.timing``: interleaved timing for the benchmarks.
"""
