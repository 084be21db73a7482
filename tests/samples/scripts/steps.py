"""A step that is a method of a class defined in the script itself, run as __main__."""

from dataclasses import dataclass

import ckpt


@dataclass
class Settings:
    threshold: float


class Step:
    def __init__(self, values):
        self.values = values

    def kept(self, settings):
        return [v for v in self.values if v > settings.threshold]

    @ckpt.ckpt(active=False)
    def run(self, settings):
        print("self is today's Step:", isinstance(self, Step), flush=True)
        print("settings is today's Settings:", isinstance(settings, Settings), flush=True)
        kept = self.kept(settings)
        return sum(kept) / len(kept)


if __name__ == "__main__":
    Step([1.0, 2.0, 3.0]).run(Settings(threshold=3.0))
