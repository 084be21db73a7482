"""`python -m ckpt`: the same program as `ckpt` and `cdip`."""

import sys

from .cli import main

sys.exit(main())
