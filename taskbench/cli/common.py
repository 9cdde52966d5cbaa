"""What every subcommand module shares: exit codes and argparse converters.

An argparse ``type=`` built with :func:`argument` runs one of the library's
own checks and turns its TaskbenchError into a usage error (exit 2), so bad
input is refused with our message before anything starts.
:class:`ConfiguredOnUse` is a subcommand parser that adds its arguments only
when that subcommand is run, so a module with a heavy or optional import
(the hostile-input campaign needs hypothesis) costs the other commands nothing.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from taskbench.bench.drain import check_positive, check_store_url
from taskbench.errors import TaskbenchError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
LOG_LEVELS = (logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG)
"""The log level for no ``-v``, ``-v``, ``-vv``, ``-vvv`` (logs go to stderr)."""

T = TypeVar("T")


def argument(check: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse ``type=`` that reports a TaskbenchError as a usage error (exit 2)."""

    def convert(raw: str) -> T:
        try:
            return check(raw)
        except TaskbenchError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = check.__name__
    return convert


def positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {raw!r}") from None
    return check_positive(value, "the value")


def add_store_option(parser: argparse.ArgumentParser, help_text: str, **options: Any) -> None:
    """``--store URL`` (required unless ``options`` say otherwise), checked while parsing:
    an unknown scheme, a bad option or a missing driver is a usage error."""
    options.setdefault("required", True)
    parser.add_argument(
        "--store", type=argument(check_store_url), metavar="URL", help=help_text, **options
    )


@dataclass(frozen=True, slots=True)
class Subcommand:
    """How to add a subcommand's arguments to its parser, and how to run it."""

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


Configure = Callable[[argparse.ArgumentParser], None]


class ConfiguredOnUse(argparse.ArgumentParser):
    """A subcommand's parser that calls ``configure`` (adding its arguments) when it is
    first used to parse: a TaskbenchError from it (a missing extra) is a usage error."""

    def __init__(self, *args: Any, configure: Configure, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._configure: Configure | None = configure

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._configure is not None:
            configure, self._configure = self._configure, None
            try:
                configure(self)
            except TaskbenchError as exc:
                self.error(str(exc))
        return super().parse_known_args(args, namespace)
