"""The replay child: bootstraps a fresh interpreter and enters a replay mode.

Installed as `_ckpt_runner` (a name no user module can have) and started by
`cdip run` as ``python -m _ckpt_runner``.  Nothing of the user's is imported
until the recorded working directory, `sys.path` and `argv` are restored.
"""
