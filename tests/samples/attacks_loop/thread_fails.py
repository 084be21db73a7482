"""An error ends a worker thread; the program goes on and ends normally."""
import threading


def work(item):
    return {}[item]


worker = threading.Thread(target=work, args=("missing",), name="worker")
worker.start()
worker.join()
print("main goes on")
