"""Fault experiments: what each store loses, duplicates or corrupts when things break.

Modules (each opens with its own design rules):

* :mod:`~taskbench.faults.servers` starts throwaway PostgreSQL, Redis and
  MariaDB instances on free loopback ports with a chosen durability setting,
  and crashes (kill -9), restarts and deletes them.
* :mod:`~taskbench.faults.crash` runs tasks in worker subprocesses, kills
  workers and servers mid-run, and audits every task against the workers'
  fsynced logs: lost, duplicated, corrupted (``taskbench faults crash`` and
  ``taskbench faults restart``).
* :mod:`~taskbench.faults.soak` runs a long stream of tasks through one store
  and samples the worker's memory (``taskbench faults soak``).
* :mod:`~taskbench.faults.hostile`, :mod:`~taskbench.faults.secrets` and
  :mod:`~taskbench.faults.backup`: hostile input, secrets handling, and
  backup/restore.

Nothing is imported here: each experiment pulls in only what it needs.
"""
