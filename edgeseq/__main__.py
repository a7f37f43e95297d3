"""`python -m edgeseq` = the `edgeseq` command."""
import sys

from .cli import main

sys.exit(main())
