"""Recursive decorated functions: deep ones, and one that runs into the recursion limit.

Usage: recursion.py deep DEPTH active|error   |   recursion.py limit
"""

import sys
import time
import traceback

import ckpt

if sys.argv[1] == "deep":
    depth, active = int(sys.argv[2]), sys.argv[3] == "active"
    sys.setrecursionlimit(depth * 3 + 200)

    @ckpt.ckpt(active=active, keep=10_000)
    def down(n):
        if n == 0:
            raise ValueError("bottom")
        return down(n - 1)

    started = time.perf_counter()
    try:
        down(depth)
    except ValueError:
        pass
    print(f"seconds {time.perf_counter() - started:.3f}")
    errors = [entry for entry in ckpt.checkpoints() if entry.trigger == "error"]
    print(f"checkpoints {len(ckpt.checkpoints())} errors {len(errors)}")
    if errors:
        print(f"innermost n={ckpt.load(errors[-1].id).arguments['n']}")
else:
    @ckpt.ckpt(active=False)
    def forever(n):
        return forever(n + 1)

    try:
        forever(0)
    except RecursionError as exc:
        innermost = traceback.extract_tb(exc.__traceback__)[-1]
        print(f"caught {exc}")
        print(f"raised in {innermost.filename.rpartition('/')[2]} {innermost.name}")
    print(f"checkpoints {len(ckpt.checkpoints())}")
