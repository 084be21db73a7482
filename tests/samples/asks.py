"""A step that reads its standard input."""

import ckpt


@ckpt.ckpt
def ask(prompt):
    return input(prompt)


if __name__ == "__main__":
    print(ask("value? "))
