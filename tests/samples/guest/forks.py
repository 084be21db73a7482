"""os.fork() in one thread while another thread saves: the child must not hang.

Usage: forks.py saving SECONDS   |   forks.py importing   |   forks.py inside
`saving`: a thread saves checkpoints of new functions all the time while the main
thread forks again and again. `importing`: the fork lands while the first save
is still importing ckpt's saving code (an import made slow on purpose). `inside`:
the saving thread itself forks (an argument's __reduce__ does): the child is not
saving, so its own call is saved.
Each child calls a decorated function and exits; one that has not exited after
two seconds is reported hung (its stack goes to stderr) and killed.
"""

import faulthandler
import os
import signal
import sys
import threading
import time

import ckpt


class Point:  # a class of __main__: pickled by value, through cloudpickle's class tracker
    def __init__(self, x):
        self.x = x


@ckpt.ckpt(keep=2)
def in_child(point):
    return point.x


def fork_and_wait():
    pid = os.fork()
    if pid == 0:
        faulthandler.dump_traceback_later(1.5, exit=True)  # a hung child shows its stack
        in_child(Point(-1))
        os._exit(0)
    for _ in range(300):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return False


def saving(seconds):
    stop = threading.Event()

    def saver():
        i = 0
        while not stop.is_set():
            # a new function each time: its first save works out what it knows of it
            ckpt.ckpt(lambda point, i: i, name="saver", keep=2)(Point(i), i)
            i += 1

    thread = threading.Thread(target=saver)
    thread.start()
    forks = hung = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        forks += 1
        hung += not fork_and_wait()
    stop.set()
    thread.join()
    return forks, hung


class SlowImport:
    """Makes importing ckpt.capture take 0.5 s, as a cold disk would."""

    def find_spec(self, name, path=None, target=None):
        if name == "ckpt.capture":
            started.set()
            time.sleep(0.5)
        return None


def importing():
    global started
    started = threading.Event()
    sys.meta_path.insert(0, SlowImport())
    thread = threading.Thread(target=lambda: ckpt.ckpt(lambda x: x, name="first")(1))
    thread.start()
    started.wait(10)
    time.sleep(0.05)
    ok = fork_and_wait()
    thread.join()
    return 1, int(not ok)


class ForksWhilePickled:
    def __reduce__(self):
        pid = os.fork()
        if pid == 0:
            in_child(Point(-2))
            saved = [entry for entry in ckpt.checkpoints() if entry.name == "in_child"]
            os._exit(0 if saved else 3)
        _, status = os.waitpid(pid, 0)
        print(f"child exit {os.waitstatus_to_exitcode(status)}", flush=True)
        return (ForksWhilePickled, ())


def inside():
    ckpt.ckpt(lambda value: 1, name="forking")(ForksWhilePickled())
    return 1, 0


if sys.argv[1] == "saving":
    forks, hung = saving(float(sys.argv[2]))
elif sys.argv[1] == "inside":
    forks, hung = inside()
else:
    forks, hung = importing()
print(f"forks {forks} hung {hung}", flush=True)
