"""Lines a test types into a REPL, runs with `python -c` or in IPython (not imported)."""

import ckpt


@ckpt.ckpt(active=False)
def typed(x):
    offset = 1
    return 10 / (x - offset)


typed(1)
