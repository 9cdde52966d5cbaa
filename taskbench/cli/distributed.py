"""The distributed subcommands: ``worker``, ``cluster`` and ``failover``."""

from __future__ import annotations

from taskbench.cli.common import Subcommand

COMMANDS: dict[str, Subcommand] = {}
