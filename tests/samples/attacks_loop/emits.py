"""Writes more than a pipe holds: a reader that leaves gives it a BrokenPipeError."""


def emit(lines):
    for number in range(lines):
        print("line", number)


emit(200000)
