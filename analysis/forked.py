"""One computation done in a forked child process while this process goes on with the rest (the machine's second
core), when forking is safe; here, when its result is asked for, otherwise.

The child is a copy of this process at the fork (the data, the seeds, the one-BLAS-thread setting), so it
computes what this process would: the same numbers, sent back pickled (floats exactly).  Forking is safe only
from a process whose one thread is the main one (``outreach report``, the benchmark): a fork copies locks that
another thread may hold at that moment, so the console's report job, run by the worker in a thread, computes
here.  Anything that goes wrong in the child (an error, a child killed for memory) is computed again here, so
the result or the error is the one the sequential code gives.
"""
from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def fork_is_safe() -> bool:
    """Can this process fork now: POSIX's fork, one (Python) thread, not itself a daemonic multiprocessing child
    (which may have no children)."""
    return (hasattr(os, "fork") and "fork" in multiprocessing.get_all_start_methods()
            and threading.active_count() == 1 and threading.current_thread() is threading.main_thread()
            and not multiprocessing.current_process().daemon)


def _run(fn: Callable[[], Any], conn: Any) -> None:  # in the child
    try:
        conn.send(("ok", fn()))
    except BaseException as exc:  # computed again in the parent, which raises it there
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


class Later(Generic[T]):
    """``fn()``, begun in a forked child now when ``fork`` is asked for and safe; :meth:`result` waits for it (or
    computes it here); :meth:`cancel` stops a child whose result is not wanted."""

    def __init__(self, fn: Callable[[], T], fork: bool = True) -> None:
        self._fn = fn
        self._process = self._conn = None
        self.forked = False
        if fork and fork_is_safe():
            context = multiprocessing.get_context("fork")
            self._conn, child_end = context.Pipe(duplex=False)
            self._process = context.Process(target=_run, args=(fn, child_end), daemon=True,
                                             name="outreach-analysis")
            self._process.start()
            child_end.close()
            self.forked = True

    def result(self) -> T:
        if self._process is not None:
            try:
                status, value = self._conn.recv()
            except (EOFError, OSError):  # the child died without an answer
                status, value = "died", None
            finally:
                self._finish()
            if status == "ok":
                return value
        return self._fn()

    def cancel(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._finish()

    def _finish(self) -> None:
        self._conn.close()
        self._process.join()
        self._process = None
