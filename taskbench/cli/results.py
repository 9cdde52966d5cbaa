"""The results subcommand: list, filter and compare the benchmark runs stored under data/."""

from __future__ import annotations

from taskbench.cli.common import Subcommand

COMMANDS: dict[str, Subcommand] = {}
