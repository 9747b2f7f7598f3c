"""Every expected failure of a stage, with its exit code (one place, no torch).

The CLI logs one message and exits with ``exc.exit_code`` instead of a traceback:
2 = bad config or input (fix it, re-run the named rule); 3 = numerical fault;
143 = stopped by SIGTERM after writing a checkpoint (re-running resumes).
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is not allowed; the message names key, value and rule."""

    exit_code = 2


class InputError(RuntimeError):
    """An input file is missing, truncated or not what the stage expects."""

    exit_code = 2


class DataUnavailableError(RuntimeError):
    """A dataset is neither staged nor downloadable here."""

    exit_code = 2


class NumericalError(RuntimeError):
    """A loss or parameter became NaN/Inf; the last good checkpoint is kept."""

    exit_code = 3


class Interrupted(SystemExit):
    """Raised after a checkpoint was written because SIGTERM arrived; exit code 143."""

    exit_code = 143

    def __init__(self, message: str):
        super().__init__(143)
        self.message = message


def exit_code(exc: BaseException) -> int | None:
    """Exit code of an expected failure (FloatingPointError counts as numerical), else None."""
    if isinstance(exc, FloatingPointError):
        return NumericalError.exit_code
    return getattr(exc, "exit_code", None) if isinstance(exc, BaseException) else None
