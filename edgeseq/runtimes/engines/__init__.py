"""edgeseq.runtimes.engines."""
