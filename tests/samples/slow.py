"""A step that takes a while, and may start a process of its own."""

import subprocess
import sys
import time

import ckpt


@ckpt.ckpt
def wait(seconds, spawn=False):
    if spawn:
        helper = subprocess.Popen(["sleep", "300"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        print(f"helper {helper.pid}", flush=True)
    print("waiting", flush=True)
    time.sleep(seconds)
    raise TimeoutError(f"gave up after {seconds}s")


if __name__ == "__main__":
    wait(float(sys.argv[1]), spawn=len(sys.argv) > 2)
