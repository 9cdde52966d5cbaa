"""The ``study`` subcommand: run every notebook headless and render the HTML report."""

from __future__ import annotations

from taskbench.cli.common import Subcommand

COMMANDS: dict[str, Subcommand] = {}
