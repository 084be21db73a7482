"""An analysis script without a main guard: its top level runs the whole pipeline."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import ckpt

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = None

HERE = Path(__file__).parent
THRESHOLD = 0.5
COLUMNS = ("low", "high")
log = logging.getLogger(__name__)


class Registry:
    """Collects the steps: its instance below decorates them."""

    def __init__(self):
        self.steps = []

    def step(self, function):
        self.steps.append(function.__name__)
        return function


registry = Registry()


def load(n):
    Path("pipeline-ran.mark").write_text("load ran\n")
    return [i / n for i in range(n)]


@registry.step
@ckpt.ckpt(active=False)
def summarise(values, threshold=THRESHOLD):
    log.info("summarising %d values", len(values))
    kept = [v for v in values if v > threshold]
    return {COLUMNS[0]: min(kept), COLUMNS[1]: max(kept), "mean": sum(kept) / len(kept)}


@ckpt.ckpt
def report(n):
    return f"{n} of {len(values)} values kept"


print("running the pipeline")
values = load(10)
print(report(3))
summary = summarise(values, float(sys.argv[1]))
Path("summary.json").write_text(json.dumps(summary))
