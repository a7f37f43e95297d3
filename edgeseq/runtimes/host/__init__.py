"""edgeseq.runtimes.host."""
