"""Steps that yield: an error comes only while they are iterated."""

import asyncio

import ckpt


@ckpt.ckpt(active=False)
def batches(rows, size):
    batch = []
    for row in rows:
        batch.append(100 / row)  # a zero row fails in the middle of the stream
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@ckpt.ckpt(active=False)
async def abatches(rows, size):
    batch = []
    for row in rows:
        await asyncio.sleep(0)
        batch.append(100 / row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@ckpt.ckpt
def counted(n):
    for i in range(n):
        if i == 2:
            raise ValueError(f"no {i} today")
        yield i


@ckpt.ckpt(active=False)
def walk(tree, depth=0):
    for child in tree:
        if isinstance(child, list):
            yield from walk(child, depth + 1)
        else:
            yield 1 / child


@ckpt.ckpt(active=False)
def doubler():
    received = yield "ready"
    try:
        while received is not None:
            received = yield received * 2
    except KeyError as exc:
        yield f"caught {exc}"
    return "done"


@ckpt.ckpt(active=False)
async def adoubler():
    received = yield "ready"
    try:
        while received is not None:
            received = yield received * 2
    except KeyError as exc:
        yield f"caught {exc}"


if __name__ == "__main__":
    import sys

    rows = [float(x) for x in sys.argv[1:]] or [1.0, 2.0, 0.0, 4.0]
    print(list(batches(rows, 2)))
