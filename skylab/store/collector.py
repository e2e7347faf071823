"""Python's cyclic garbage collector, paused while history's many small objects are made."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused(freeze: bool = False) -> Iterator[None]:
    """Python's cyclic garbage collector off while a history of many small objects is built or
    unpickled: otherwise it runs a full pass every few hundred thousand allocations, which doubled
    the time to load 100,000 trials. History holds no reference cycles, so there is nothing for it
    to free there. With `freeze`, what is alive at the end is also moved out of the collector's
    sight (`gc.freeze`), which saves the pass over everything new once it is back on; for what
    was built once and lives long (see `HistoryLoader.load`), since cyclic garbage made before is
    frozen too."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if was_enabled:
            gc.enable()
