"""The process set-up of a study run: Ctrl-C kept, the allocator, logging, JAX's random streams,
quiet libraries, the group of processes of a multi-process run and the results folder's check.

Called by the command line (study.run) and the tests (tests/conftest.py), so that both start
the study the same way. Nothing here catches the study's errors: study.run alone turns them
into exit codes.
"""

from __future__ import annotations

import _thread
import contextlib
import logging
import sys
import tempfile
import threading
from pathlib import Path

from study.core.errors import ConfigError


def set_up(jax: bool = True) -> None:
    """Ctrl-C kept, the allocator, logging, JAX's configuration (unless `jax` is False) and quiet
    libraries, in that order."""
    keep_interrupts()
    tune_allocator()
    configure_logging()
    if jax:
        configure_jax()
    quiet_libraries()


def keep_interrupts() -> None:
    """Ctrl-C that lands in a finalizer stops the program all the same.

    Python cannot raise an exception out of a `__del__` method or a garbage-collector callback:
    it hands it to sys.unraisablehook, which prints it ("Exception ignored in ..."), and goes
    on. Ctrl-C pressed while one runs (JAX runs one at every collection; grain's iterators stop
    their worker processes in `__del__`) was so printed and lost: a traceback, and the run went
    on. This hook raises it again in the main thread 50 ms later (by then the finalizer has
    returned; at once, it could land in the next one), where study.run turns it into
    "interrupted". Every other exception goes to the hook there was before. Idempotent: set up
    once however often it is called."""
    previous = sys.unraisablehook
    if getattr(previous, "keeps_interrupts", False):
        return

    def hook(unraisable) -> None:
        if issubclass(unraisable.exc_type, KeyboardInterrupt):
            later = threading.Timer(0.05, _thread.interrupt_main)
            later.daemon = True  # never holds the program's exit
            later.start()
        else:
            previous(unraisable)

    hook.keeps_interrupts = True
    sys.unraisablehook = hook


def quiet_libraries() -> None:
    """TFDS and absl log every config and progress bar; the study prints its own summary."""
    import absl.logging
    import tensorflow_datasets as tfds

    absl.logging.set_verbosity(absl.logging.ERROR)
    tfds.disable_progress_bar()


def configure_jax() -> None:
    """The random streams the study's seeds were drawn with: JAX's threefry, not partitionable.

    Threefry's partitionable lowering (JAX's default) takes seconds per array shape to compile
    on CPU (measured: 4.5 s for each initializer shape on 2 cores), which made building a model
    take 20 s; the classic lowering compiles in a fraction of that. Same generator; only the
    order in which its bits are laid out differs, so the committed heads were drawn with this
    setting. Set once, where the program starts (the command line, and the tests' conftest),
    before any key is made."""
    import jax

    jax.config.update("jax_threefry_partitionable", False)


def tune_allocator() -> None:
    """Keep freed memory in the process (glibc only; elsewhere nothing to do).

    glibc's malloc gives every block above 32 MB back to the system when it is freed (mmap),
    so XLA's buffers of each batch are new pages that fault in again on first touch. On 2
    cores this made a 33 MB elementwise copy 4.4x slower (8.0 against 1.8 ms) and a 64-channel
    convolution of 32 images at 64 px 1.4x slower (129 against 94 ms). Allocating from the
    heap only (M_MMAP_MAX = 0) and trimming it only above 2 GB (M_TRIM_THRESHOLD) keeps the
    pages: peak memory is unchanged, it is just not handed back between batches.
    """
    if sys.platform != "linux":
        return
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl): it has no such thresholds
        return
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
    libc.mallopt(M_MMAP_MAX, 0)
    libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)


def configure_logging() -> None:
    """The study's log lines at INFO, without JAX's search for platforms it does not find."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # JAX logs at INFO each platform it looks for and does not find ("Unable to initialize
    # backend 'tpu'") on every run: not news to anyone running the study.
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)


def together(processes: int):
    """In a group of processes, a failure here stops the others at their next barrier."""
    if processes == 1:
        return contextlib.nullcontext()
    from study.extraction import distributed

    return distributed.failing_together()


def join_processes(processes: int, coordinator: str | None, process_id: int) -> bool:
    """Join the group of processes of a multi-process `features` run; True for process 0."""
    if processes == 1:
        return True
    if not coordinator:
        raise ConfigError("--processes N needs --coordinator HOST:PORT (process 0's)")
    from study.extraction import distributed

    distributed.initialize(coordinator, processes, process_id)
    return process_id == 0


def check_writable(folder: Path, option: str) -> None:
    """Refuse, before any work, a results folder that is a file or cannot be written."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{option} {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{option} {folder} cannot be made ({e.strerror})") from None
    try:  # a file made and dropped: the one test that holds for root and every file system
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as e:
        raise ConfigError(f"{option} {folder} is not writable ({e.strerror})") from None
