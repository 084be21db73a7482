"""A step that runs until interrupted (tests replay it and press Ctrl-C)."""

import asyncio
import sys
import time

import ckpt


@ckpt.ckpt
def spin(seconds):
    turns = 0
    deadline = time.monotonic() + seconds
    print("spinning", flush=True)
    while time.monotonic() < deadline:
        turns += 1
        time.sleep(0.01)
    return turns


@ckpt.ckpt
async def aspin(seconds):
    turns = 0
    deadline = time.monotonic() + seconds
    print("spinning", flush=True)
    while time.monotonic() < deadline:
        turns += 1
        await asyncio.sleep(0.01)
    return turns


if __name__ == "__main__":
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    print(spin(seconds), asyncio.run(aspin(seconds)))
