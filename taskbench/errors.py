"""The exceptions taskbench raises: one root, a class per kind of failure.

Every error a caller can see is a :class:`TaskbenchError`. Driver exceptions
(sqlite3, asyncpg, redis, PyMySQL, aetcd) are translated into these at the
store or coordinator boundary, so callers never catch a driver's types. Each
class's docstring is its default message, as in procrastinate.
"""

from __future__ import annotations


class TaskbenchError(Exception):
    """taskbench failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(TaskbenchError, ValueError):
    """The configuration (a URL, an option or a parameter) is not valid."""


class InvalidTaskError(TaskbenchError, ValueError):
    """The task is not valid."""


class MissingDependencyError(TaskbenchError, ImportError):
    """An optional dependency is not installed."""


class StoreError(TaskbenchError):
    """The task store failed."""


class StoreUnavailableError(StoreError, ConnectionError):
    """The task store's server cannot be reached."""


class StaleEpochError(StoreError):
    """A leader's write carried an epoch older than one the store has seen."""


class CoordinatorError(TaskbenchError):
    """The coordinator failed."""


class CoordinatorUnavailableError(CoordinatorError, ConnectionError):
    """The coordinator's server cannot be reached."""


class SessionExpiredError(CoordinatorError):
    """The coordinator's session expired on the server; a new one is being opened."""


class ExecutorError(TaskbenchError):
    """The executor failed."""


class HandlerNotFoundError(ExecutorError, LookupError):
    """No handler is registered for this task name."""


class TaskTimeoutError(ExecutorError, TimeoutError):
    """The task ran longer than its timeout."""


class BenchmarkError(TaskbenchError):
    """The benchmark could not run."""
