"""A script that drives steplib.configure with a Config it defines (no main guard)."""

import steplib


class Config:
    def __init__(self, size, parts):
        self.size, self.parts = size, parts

    def describe(self):
        return f"{self.size} in {self.parts} parts"


print("driving")
steplib.configure(Config(12, 0))
