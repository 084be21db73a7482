"""A step that leaves a helper behind which, told to stop (SIGTERM), starts a copy of itself.

The helper notes the pid of each copy in a log; each copy does the same when told.
"""

import os
import signal
import subprocess
import sys
import time

import ckpt


def note(log):
    with open(log, "a") as stream:
        stream.write(f"{os.getpid()}\n")


def helper(log):
    def fork_away(signum, frame):
        if os.fork():
            os._exit(0)  # this one obeys; its copy carries on, with this same handler
        note(log)

    signal.signal(signal.SIGTERM, fork_away)
    note(log)
    while True:
        time.sleep(1)


@ckpt.ckpt
def start(log=None):
    if log:
        subprocess.Popen([sys.executable, __file__, "helper", log])
        while not os.path.exists(log):
            time.sleep(0.01)
        print("helper started", flush=True)
    raise RuntimeError("left a helper behind")


if __name__ == "__main__":
    if sys.argv[1:2] == ["helper"]:
        helper(sys.argv[2])
    else:
        start()
