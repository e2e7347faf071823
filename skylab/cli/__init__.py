"""The `skylab` command line, one module per group of commands (as pre-commit and DVC keep theirs):
`experiment` (init, import, prepare, constants, demo, gc), `trials` (history, show, diff, apply,
branch, report), `research` (run, ablate, confirm, the post-commit hook) and `sharing` (push, pull),
on what `common` holds for all of them. A command only parses its arguments and prints what the
layer that owns its logic returns. To add one, write its function in the module of its group and
name it in `common.WORKFLOW`, the order `skylab --help` lists commands in.
"""

from __future__ import annotations

from skylab.cli import experiment, research, sharing, trials
from skylab.cli.common import app, main

__all__ = ["app", "experiment", "main", "research", "sharing", "trials"]
