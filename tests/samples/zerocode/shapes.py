"""Frames of every shape on one stack: a method, a class method, a recursion, a closure, a deleted
parameter."""

import ckpt


class Ledger:
    def __init__(self, entries):
        self.entries = entries

    def total(self, start=0):
        return Ledger.tally(self.entries)

    @classmethod
    def tally(cls, entries):
        return countdown(len(entries), entries)


def countdown(n, entries):
    if n > 0:
        return countdown(n - 1, entries)
    return make_checker(entries)("bad")


def make_checker(entries):
    limit = len(entries)

    def check(word, *rest, strict=True, **options):
        del strict
        return [limit / (len(word) - 3) for _ in entries]

    return check


@ckpt.ckpt(active=False)
def decorated(ledger):
    return ledger.total()


if __name__ == "__main__":
    decorated(Ledger([1, 2]))
