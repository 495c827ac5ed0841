"""The features stage across processes with jax.distributed: one process per host or per GPU.

    python -m study.run features --processes N --process-id I --coordinator HOST:PORT

started once per process (I = 0 .. N-1, the same coordinator: process 0's host and a free
port). Every process walks the same units; each computes the batches of every unit whose
number modulo N is its index, on its own devices, into one set of files in the shared cache
(study.extraction.extract.compute); process 0 holds the units' locks, creates, names and marks the
files. One process (the default) is the plain single-process run.

The processes meet at barriers kept in the key-value store of jax's coordination service:
each process writes the name of its k-th barrier under its index and polls for the others',
which also checks that all of them are at the same step. The processes only share files,
never device buffers, so no collective over the devices is needed. A process that fails
writes its error into the same store before it exits (`failing_together`), and every other
process stops at its next barrier, within a poll, with an error that names it (a collective
barrier would instead wait out jax's timeouts, minutes). A process that dies without a word
(killed) stops answering the coordination service's heartbeats: after `HEARTBEAT_SECONDS`
(jax's default is 100) the service reports it to the others, and jax stops them. Nothing is marked done by a
group that failed (process 0 marks a unit after the barrier that follows every process's
share), so a rerun computes the unit again.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterator

import jax

from study.core.errors import ConfigError, ProcessFailed

# A process that stops answering is dead after this many seconds (jax's default is 100).
HEARTBEAT_SECONDS = 10
# How often a process at a barrier looks for the others, and for a failure.
POLL_SECONDS = 0.02
FAILED = "study/failed"

_barriers = itertools.count()


def initialize(coordinator: str, processes: int, process_id: int) -> None:
    """Join this process to the JAX process group at `coordinator`; ConfigError if process_id is out of range."""
    if not 0 <= process_id < processes:
        raise ConfigError(f"--process-id {process_id} is not in 0..{processes - 1}")
    jax.distributed.initialize(coordinator, processes, process_id, heartbeat_timeout_seconds=HEARTBEAT_SECONDS)


def index() -> int:
    """This process's index in the JAX process group."""
    return jax.process_index()


def count() -> int:
    """The number of processes in the JAX process group."""
    return jax.process_count()


def _client():
    from jax._src import distributed as jax_distributed

    return jax_distributed.global_state.client


def _get(client, key: str) -> str | None:
    try:
        return client.key_value_try_get(key)
    except Exception as e:  # the store says NOT_FOUND by raising; anything else is a real error
        if "NOT_FOUND" in str(e) or "not found" in str(e).lower():
            return None
        raise


def barrier(name: str) -> None:
    """Wait until every process gets here, and check that they all name the same step; stop
    with ProcessFailed if another process failed or died meanwhile."""
    if count() == 1:
        return
    client, me, k = _client(), index(), next(_barriers)
    client.key_value_set(f"study/barrier/{k}/{me}", name)
    waiting = set(range(count())) - {me}
    while waiting:
        failure = _get(client, FAILED)
        if failure is not None:
            raise ProcessFailed(f"{failure}; process {me} stops too (run the same commands again to resume)")
        for p in sorted(waiting):
            at = _get(client, f"study/barrier/{k}/{p}")
            if at is not None and at != name:
                raise ProcessFailed(
                    f"process {p} is at step {at!r}, process {me} at {name!r}: the processes "
                    "run different commands or options"
                )
            if at is not None:
                waiting.discard(p)
        if waiting:
            time.sleep(POLL_SECONDS)


@contextlib.contextmanager
def failing_together() -> Iterator[None]:
    """Run a stage in a group of processes: if this process fails, the others learn why at
    their next barrier instead of waiting for it."""
    try:
        yield
    except BaseException as e:
        if count() > 1 and not isinstance(e, ProcessFailed):
            with contextlib.suppress(Exception):  # the store may be gone with process 0; the error stands
                _client().key_value_set(FAILED, f"process {index()} failed: {type(e).__name__}: {e}"[:2000])
        raise
