"""Every kind of callable the decorator must handle, in one importable module."""

import asyncio
import threading

import ckpt


@ckpt.ckpt
def add(a, b=10, *rest, scale=1, **options):
    return (a + b + sum(rest)) * scale


@ckpt.ckpt(active=False)
def divide(a, b):
    ratio = a / b
    return ratio


class Account:
    def __init__(self, balance):
        self.balance = balance

    @ckpt.ckpt(active=False)
    def withdraw(self, amount):
        if amount > self.balance:
            raise ValueError(f"cannot withdraw {amount} from {self.balance}")
        self.balance -= amount
        return self.balance

    @staticmethod
    @ckpt.ckpt
    def fee(amount):
        return amount * 0.01

    @ckpt.ckpt
    @classmethod
    def opened(cls, balance):
        return cls(balance)


def make_counter(start):
    @ckpt.ckpt(active=False)
    def step(by):
        total = start + by
        raise RuntimeError(f"step failed at {total}")

    return step


@ckpt.ckpt(active=False)
async def fetch(url):
    await asyncio.sleep(0)
    raise ConnectionError(f"cannot reach {url}")


@ckpt.ckpt(active=False)
def outer(x):
    return inner(x * 2)


@ckpt.ckpt(active=False)
def inner(y):
    z = y + 1
    raise KeyError(z)


@ckpt.ckpt(active=False)
def unpicklable(lock, value):
    raise ValueError("with a lock")


@ckpt.ckpt(name="big", active=lambda n, **kw: n > 3, keep=2)
def maybe(n, **kw):
    return n


@ckpt.ckpt(active=False)
def interrupted():
    raise KeyboardInterrupt


@ckpt.ckpt(active=False)
def exits(code):
    raise SystemExit(code)


LOCK = threading.Lock()
