"""edgeseq.artifact."""
