"""The features stage across processes with jax.distributed: one process per host or per GPU.

    python -m study.run features --processes N --process-id I --coordinator HOST:PORT

started once per process (I = 0 .. N-1, the same coordinator: process 0's host and a free
port). Every process walks the same units; each computes the batches of every unit whose
number modulo N is its index, on its own devices, into one set of files in the shared cache
(study.extraction.extract.compute); process 0 holds the units' locks, creates, names and marks the
files. The processes meet at barriers (`sync_global_devices`, a collective over every
process's devices: gloo between CPUs, NCCL between GPUs), which also check that all of them
are at the same step. One process (the default) is the plain single-process run.
"""

from __future__ import annotations

import jax

from study.core.errors import ConfigError


def initialize(coordinator: str, processes: int, process_id: int) -> None:
    if not 0 <= process_id < processes:
        raise ConfigError(f"--process-id {process_id} is not in 0..{processes - 1}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # barriers between CPU processes
    jax.distributed.initialize(coordinator, processes, process_id)


def index() -> int:
    return jax.process_index()


def count() -> int:
    return jax.process_count()


def barrier(name: str) -> None:
    """Wait until every process gets here (and check that they all name the same step)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
