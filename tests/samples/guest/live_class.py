"""A class defined in __main__ (as in a notebook): ckpt.load in the same process must not touch it."""

import ckpt

SCALE = 2


class Step:
    def __init__(self, size):
        self.size = size

    @ckpt.ckpt
    def run(self, extra):
        return self.size * SCALE + extra

    def helper(self):
        return "live"


def snapshot():
    return {name: value for name, value in vars(Step).items()}


Step(3).run(1)
before = snapshot()
run, helper = Step.run, Step.helper
checkpoint = ckpt.load()
after = snapshot()
changed = sorted(name for name in set(before) | set(after)
                 if before.get(name, None) is not after.get(name, None))
print("changed", changed)
print("same methods", Step.run is run and Step.helper is helper)
loaded = checkpoint.args[0]
print("loaded is a live Step", isinstance(loaded, Step), loaded.size, loaded.helper())
print("call", checkpoint.call())
