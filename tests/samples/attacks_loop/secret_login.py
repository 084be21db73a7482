"""Crashes holding a secret from its environment in a parameter and in a local."""
import os


def connect(host, password, retries=1):
    api_token = os.environ["SECRET"][::-1]
    raise ConnectionError(f"{host} refused")


def main():
    connect("db.example", os.environ["SECRET"])


main()
