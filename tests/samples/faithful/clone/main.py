"""The project's entry point: it fails in calc.ratio."""

import calc

if __name__ == "__main__":
    print(calc.ratio(1, 0))
