"""An analysis script with no decorator: main -> load -> parse, which crashes three calls deep."""

import sys

SCALE = 10


def parse(text, sep=","):
    fields = text.split(sep)
    text = text.strip()  # reassigned before the error: saved as it is then
    return [SCALE / int(field) for field in fields]


def load(path, *, retries=1):
    text = path.replace("x", "0")
    return parse(text)


def main(argv):
    print("loading", argv[1:])
    return load(argv[1] if len(argv) > 1 else "1,x")


if __name__ == "__main__":
    print(main(sys.argv))
