"""edgeseq.reference."""
