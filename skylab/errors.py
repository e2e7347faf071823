"""Errors a user can act on: the CLI prints them as one line and exits 2, without a traceback."""

from __future__ import annotations


class SkylabError(Exception):
    """A problem with the user's input or repository, explained in one line."""

    exit_code = 2


class ConfigError(SkylabError):
    """A bad experiment file: names the file, the key and what is wrong with it."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        self.file = file
        self.key = key
        self.problem = problem
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {problem}")


class StoreError(SkylabError):
    """The trial store cannot do what was asked (unknown trial, colliding refs, diverged remote...)."""
