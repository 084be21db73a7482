"""An analysis script with no decorator and no main guard: its expensive load
counts its runs in a file; the innermost step divides by zero."""

from pathlib import Path

RUNS = Path("load-runs.txt")


def load():
    runs = int(RUNS.read_text()) if RUNS.exists() else 0
    RUNS.write_text(str(runs + 1))  # the hours of work nobody wants to redo
    return list(range(10))


def normalise(values, scale):
    return [value / scale for value in values]


def step(values):
    scale = sum(values) - 45
    return sum(normalise(values, scale))


def main():
    values = load()
    print("total", step(values))


main()
