"""Steps that yield: the error comes only while they are iterated."""

import asyncio

import ckpt


@ckpt.ckpt
def ratios(n):
    for i in range(n):
        yield 10 / (n - 1 - i)  # the last item divides by zero


@ckpt.ckpt
async def aratios(n):
    for i in range(n):
        await asyncio.sleep(0)
        yield 10 / (n - 1 - i)


@ckpt.ckpt
def squares(n):
    yield from (i * i for i in range(n))


if __name__ == "__main__":
    ratios(3)  # saved at the call; not iterated here
    aratios(3)
    print(list(squares(4)))
