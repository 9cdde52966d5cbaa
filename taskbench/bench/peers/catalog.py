"""The peers taskbench is compared with: what each one installs, runs and competes against.

Design rules:

* **Pinned.** Each peer lists the exact versions installed into its own
  virtual environment and tested with this harness; a new version is a
  deliberate edit here, not whatever the registry serves that day.
* **One entry, one comparison.** A :class:`PeerSpec` names its drain script
  (run by file path with the peer's own Python), the server it needs, and the
  taskbench store it is compared with, including that store's options, so
  the pairing is written down once.
* **Unknown names fail early.** :func:`peer_spec` raises ConfigError listing
  the known peers before anything is installed or run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from taskbench.errors import ConfigError

SCRIPTS = Path(__file__).resolve().parent

HUEY = ("huey==3.5.4",)
PGQUEUER = ("pgqueuer==1.6.0", "asyncpg==0.32.0", "uvloop==0.23.0")
ARQ = ("arq==0.28.0", "redis==5.3.1", "hiredis==3.5.0")
# saq 0.26.4 imports typing_extensions without declaring it.
SAQ = ("saq==0.26.4", "redis==8.1.0", "hiredis==3.5.0", "typing_extensions==4.16.0")


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerSpec:
    """One peer configuration and the taskbench store it is measured against."""

    name: str
    environment: str
    """Name of the peer's virtual environment (peers sharing pins share one)."""
    requirements: tuple[str, ...]
    script: str
    script_args: tuple[str, ...] = ()
    server: str
    """``sqlite`` (a temporary file), ``postgres`` or ``redis``."""
    ours_options: str = ""
    """Query-string options for our store, e.g. ``synchronous=FULL``."""

    @property
    def script_path(self) -> Path:
        return SCRIPTS / self.script


PEERS: dict[str, PeerSpec] = {
    spec.name: spec
    for spec in (
        PeerSpec(
            name="huey-fsync",
            environment="huey",
            requirements=HUEY,
            script="huey_drain.py",
            script_args=("--fsync", "true"),
            server="sqlite",
            ours_options="synchronous=FULL",
        ),
        PeerSpec(
            name="huey-nofsync",
            environment="huey",
            requirements=HUEY,
            script="huey_drain.py",
            script_args=("--fsync", "false"),
            server="sqlite",
            ours_options="synchronous=NORMAL",
        ),
        PeerSpec(
            name="pgqueuer",
            environment="pgqueuer",
            requirements=PGQUEUER,
            script="pgqueuer_drain.py",
            server="postgres",
        ),
        PeerSpec(
            name="arq", environment="arq", requirements=ARQ, script="arq_drain.py", server="redis"
        ),
        PeerSpec(
            name="saq", environment="saq", requirements=SAQ, script="saq_drain.py", server="redis"
        ),
    )
}


def peer_spec(name: str) -> PeerSpec:
    """The peer called ``name``; ConfigError (listing the known ones) if there is none."""
    spec = PEERS.get(name)
    if spec is None:
        known = ", ".join(PEERS)
        raise ConfigError(f"unknown peer {name!r}; known peers: {known}")
    return spec
