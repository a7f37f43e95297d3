"""`edgeseq compare`: encoder-decoder vs decoder-only (or any models) under one protocol, resumable,
with a Markdown report, JSON results and plots."""
from .suite import Suite, load_suite, suite_names

__all__ = ["Suite", "load_suite", "suite_names"]
