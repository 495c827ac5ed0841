"""The study's own errors: bad input, missing or stale results, a busy folder.

Each is a `StudyError`, whose message says what is wrong and how to fix it; the command line
(study.run) prints that message and exits with status 2. Any other exception is a bug, and
keeps its traceback. Each class also keeps the built-in base it had before it joined the
hierarchy (a weights file refused is still a ValueError), so that callers catching those
keep working.
"""

from __future__ import annotations

from pathlib import Path


class StudyError(Exception):
    """An error of the study's inputs or results, with a message for the person running it."""


class ConfigError(StudyError, ValueError):
    """An option, preset or name that is not valid; the message lists the valid ones."""


class DatasetError(StudyError, RuntimeError):
    """Input data the study cannot use; the message says what was expected and how to fix it."""


class WeightsError(StudyError, ValueError):
    """A weights file the study refuses; the message names the problem."""


class StaleResultError(StudyError, RuntimeError):
    """Existing results were made from another configuration or other inputs."""


class MissingArtefact(StudyError, FileNotFoundError):
    """An input a stage needs is not there (or not intact); the message names the file and the
    command that makes it."""

    def __init__(self, what: str, path: Path | str, command: str):
        super().__init__(f"{what} is missing or incomplete ({path}): run `{command}` to make it")


class MissingResults(StudyError, RuntimeError):
    """The results are incomplete; the message lists what is missing."""


class FolderBusy(StudyError, RuntimeError):
    """Another run holds the folder; the message names that run."""


class TrainingDiverged(StudyError, FloatingPointError):
    """A training loss that is not finite: the run stops, naming the model and the epoch."""


class ProcessFailed(StudyError, RuntimeError):
    """Another process of a multi-process run failed; the message names it and its error."""
