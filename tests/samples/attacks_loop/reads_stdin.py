"""Reads its standard input, then fails on it."""
import sys


def parse(text):
    return int(text)


data = sys.stdin.read()
print("read", len(data))
print(parse(data))
