"""A module whose class a closure in closures.py captures (tests then delete it)."""


class Limit:
    def __init__(self, value):
        self.value = value
