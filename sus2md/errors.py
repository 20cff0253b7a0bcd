"""Error types.  Every user-facing failure is a :class:`Sus2mdError` subclass with a one-line
message that names the file, line or field and what to do.  The CLI prints the message and exits
with ``exit_code`` (2 for usage errors, 1 for runtime failures); ``--debug`` shows the traceback.
"""
from __future__ import annotations


class Sus2mdError(Exception):
    """Base class of all sus2md errors."""

    exit_code = 1


class UsageError(Sus2mdError):
    """The user asked for something that cannot be done as asked (exit code 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """A YAML protocol/training config is invalid; the message names the YAML path."""


class FileFormatError(UsageError):
    """A file could not be parsed; the message names the file and line."""

    def __init__(self, path, line: int | None, message: str):
        self.path = str(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class ModelFileError(FileFormatError):
    """An ``.mtp`` or compiled model file is invalid."""


class DataFileError(FileFormatError):
    """A ``.cfg``/extxyz/structure file is invalid."""


class UnknownSpeciesError(UsageError):
    """A structure contains elements the model does not know."""


class StructureError(UsageError):
    """A structure is physically unusable (overlapping atoms, NaN, degenerate cell...)."""


class SimulationError(Sus2mdError):
    """A simulation failed while running (blow-up, NaN, platform failure)."""


class CompileError(Sus2mdError):
    """A model could not be compiled here (no C++ compiler, unsupported device or torch)."""
