"""`python -m cma_tracing`: the `cma-tracing` command."""

import sys

from .cli import main

sys.exit(main())
