"""The helper `ratio` imports: editing it fixes the step."""


def offset():
    return 1
