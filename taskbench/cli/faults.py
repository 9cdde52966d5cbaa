"""The fault-injection subcommands: ``faults crash`` and its kin."""

from __future__ import annotations

from taskbench.cli.common import Subcommand

COMMANDS: dict[str, Subcommand] = {}
