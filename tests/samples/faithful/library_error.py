"""A step that fails deep inside the standard library (json), as pandas' errors do."""

import json

import ckpt


@ckpt.ckpt(active=False)
def load_config(text):
    defaults = {"retries": 3}
    parsed = parse(text)
    return {**defaults, **parsed}


def parse(text):
    cleaned = text.strip()
    return json.loads(cleaned)


if __name__ == "__main__":
    load_config(' {"retries": 5, ')
