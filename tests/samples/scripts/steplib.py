"""A module with a step; the script driver.py calls it with an instance of its own class."""

import ckpt


@ckpt.ckpt(active=False)
def configure(config):
    print("config is today's:", config.describe(), flush=True)
    return config.size // config.parts
