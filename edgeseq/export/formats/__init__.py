"""edgeseq.export.formats."""
