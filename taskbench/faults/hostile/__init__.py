"""Hostile input: generated URLs, tasks, store calls and command lines, judged case by case.

What this package owns: the hypothesis strategies that make hostile input, the
checks that judge each generated case, and :func:`run_campaign`, which runs
them outside pytest and counts what happened, so that the figure "N generated
cases per entry point, zero unexpected exceptions, zero corrupted tasks" can
be measured (``python -m taskbench.faults.hostile --store URL``). The tests run
the same campaign with fewer examples.

The entry points (:data:`ENTRY_POINTS`):

* ``enqueue``: tasks made by ``Task.new`` with hostile arguments, or built by
  hand so that they skip it, enqueued in batches of one to three;
* ``store-calls``: every other store call with hostile arguments (workers,
  limits, times, ids, forged leases, outcomes carrying hostile results and
  errors, statuses, epochs, live-worker lists);
* ``open_store`` and ``open_coordinator``: generated URLs, opened when they
  point somewhere harmless;
* ``cli``: ``taskbench bench --store URL ...``, run in-process with a UTF-8
  stdout that fails on unencodable text as a real pipe does.

Design rules:

* **A case ends one of three ways**: a clean success, a TaskbenchError (the
  input is refused), or a finding: any other exception, a hang (no answer in
  ``CASE_TIMEOUT_S``), a corrupted task, a wrong answer, or a password of the
  URL showing up in a message, a log record or the command's output.
* **Canaries.** Before the store entry points run, the store is purged and
  canary tasks are planted, one in each state (queued far in the future,
  running under a long lease, succeeded, dead, retried). Their times are
  fixed, so planting is deterministic. After every case they are read back
  and compared field by field with their snapshot.
* **Accepted input round-trips.** An enqueued task reads back equal to what
  was given (strings code point for code point); a store call that applied
  leaves exactly the state its contract describes, computed here from the
  model; a refused call changes nothing; every stored time is finite.
* **Never a live server by accident.** Generated URLs connect only to a
  loopback port nothing listens on, to host names that fail before any DNS
  query, to SQLite files in a scratch directory, or to memory; fully random
  strings are parsed, never opened. The store under test is the only server
  state touched, and it is purged: give the campaign a store of its own.
* **Finite hostile times stay below the canaries.** They are drawn within
  +-``FINITE_LIMIT`` seconds, and canaries live at ``FAR``: a call that
  accepts such a time can only touch the tasks made for its case. A
  non-finite time must be refused (the model's times are finite POSIX
  seconds); one that is accepted shows up as a changed canary or a stored
  non-finite time.

The modules:

* :mod:`~taskbench.faults.hostile.findings`: what a campaign reports, and the
  exceptions a check ends a case with;
* :mod:`~taskbench.faults.hostile.canaries`: the canary tasks, the bait's
  worker and the fixed times they keep to;
* :mod:`~taskbench.faults.hostile.values`, :mod:`~taskbench.faults.hostile.store_cases`
  and :mod:`~taskbench.faults.hostile.url_cases`: the strategies (hostile
  values; tasks and store calls; URLs and command lines);
* :mod:`~taskbench.faults.hostile.store_checks` and
  :mod:`~taskbench.faults.hostile.url_checks`: judging each case;
* :mod:`~taskbench.faults.hostile.campaign`: running the cases and counting them;
* :mod:`~taskbench.faults.hostile.command`: ``python -m taskbench.faults.hostile``
  (and the ``taskbench faults hostile`` subcommand).

Every public name of theirs is importable from here.
"""

from __future__ import annotations

from taskbench.errors import MissingDependencyError

try:
    import hypothesis  # noqa: F401  (the modules below build on it)
except ImportError:  # pragma: no cover - depends on the environment
    raise MissingDependencyError(
        "taskbench.faults.hostile needs hypothesis: pip install 'taskbench[dev]'"
    ) from None

from taskbench.faults.hostile.campaign import (
    ACCEPTED,
    CASE_TIMEOUT_S,
    ENTRY_POINTS,
    REFUSED,
    STORE_ENTRY_POINTS,
    Campaign,
    T,
    check_entry_points,
    empty_directory,
    run_campaign,
    run_examples,
)
from taskbench.faults.hostile.canaries import (
    BAIT_LEASE_S,
    BAIT_NOW,
    BAIT_RUN_AT,
    BAIT_WORKER,
    CANARY_IDS,
    CANARY_NOW,
    CANARY_OWNER,
    FAR,
    FINITE_LIMIT,
    plant_canaries,
)
from taskbench.faults.hostile.command import (
    configure,
    main,
    run,
)
from taskbench.faults.hostile.findings import (
    CORRUPTION_KINDS,
    KEPT_PER_SIGNATURE,
    MASKED,
    UNEXPECTED_KINDS,
    CampaignResult,
    Finding,
    Refused,
    StoreBroken,
    Tally,
    Violation,
    describe_exception,
    short,
)
from taskbench.faults.hostile.store_cases import (
    BAIT,
    HAND_BUILT_FIELDS,
    LOOK_ALIKE_IDS,
    LOOK_ALIKE_WORKERS,
    NEEDS_CLAIMED_BAIT,
    Claim,
    Extend,
    Finish,
    GetMany,
    HandBuiltTask,
    LeaseSpec,
    ListDead,
    NewTask,
    Purge,
    Release,
    RequeueAbandoned,
    RequeueDead,
    RequeueExpired,
    StoreCall,
    WaitForWork,
    counts,
    enqueue_cases,
    epochs,
    hand_built_tasks,
    id_lists,
    lease_specs,
    live_worker_lists,
    max_attempts,
    names,
    new_tasks,
    not_a_status,
    priorities,
    status_lists,
    store_calls,
    task_ids,
    wait_timeouts,
    workers,
)
from taskbench.faults.hostile.store_checks import (
    RESET_AFTER_CHARS,
    StoreChecks,
    after_finish,
    after_release,
    differing_fields,
    expect_same,
    is_finite,
    is_number,
    make_outcome,
    non_finite_times,
    plain_id,
    same_value,
)
from taskbench.faults.hostile.url_cases import (
    BAD_PORTS,
    CHEAP_WORKLOADS,
    COORDINATOR_SCHEMES,
    COUNT_TEXTS,
    LOOPBACK_HOSTS,
    ODD_HOSTS,
    ODD_SCHEMES,
    OPTION_NAMES,
    OPTION_VALUES,
    PASSWORDS,
    PATHS,
    STORE_SCHEMES,
    USERS,
    CliCase,
    UrlCase,
    cli_cases,
    query_pair,
    url_cases,
)
from taskbench.faults.hostile.url_checks import (
    RESULTS_DIR_VARIABLE,
    CliRun,
    judge_cli,
    leaked,
    open_and_close,
    results_directory,
    run_cli_in_process,
)
from taskbench.faults.hostile.values import (
    BIG_INTS,
    HUGE_LENGTHS,
    LONG_LENGTHS,
    LONG_UNITS,
    LUA_INJECTION,
    NESTING_DEPTHS,
    ODD_UNICODE,
    ODD_VALUES,
    SQL_INJECTION,
    SURROGATES,
    beyond_floats,
    big_ints,
    deep_json_text,
    hostile_numbers,
    hostile_payloads,
    hostile_text,
    hostile_times,
    json_text,
    long_text,
    nest,
    odd_numbers,
    odd_times,
    payload_leaves,
    payload_texts,
    repeat,
    wrong_types,
)

__all__ = [
    "ACCEPTED",
    "BAD_PORTS",
    "BAIT",
    "BAIT_LEASE_S",
    "BAIT_NOW",
    "BAIT_RUN_AT",
    "BAIT_WORKER",
    "BIG_INTS",
    "CANARY_IDS",
    "CANARY_NOW",
    "CANARY_OWNER",
    "CASE_TIMEOUT_S",
    "CHEAP_WORKLOADS",
    "COORDINATOR_SCHEMES",
    "CORRUPTION_KINDS",
    "COUNT_TEXTS",
    "ENTRY_POINTS",
    "FAR",
    "FINITE_LIMIT",
    "HAND_BUILT_FIELDS",
    "HUGE_LENGTHS",
    "KEPT_PER_SIGNATURE",
    "LONG_LENGTHS",
    "LONG_UNITS",
    "LOOK_ALIKE_IDS",
    "LOOK_ALIKE_WORKERS",
    "LOOPBACK_HOSTS",
    "LUA_INJECTION",
    "MASKED",
    "NEEDS_CLAIMED_BAIT",
    "NESTING_DEPTHS",
    "ODD_HOSTS",
    "ODD_SCHEMES",
    "ODD_UNICODE",
    "ODD_VALUES",
    "OPTION_NAMES",
    "OPTION_VALUES",
    "PASSWORDS",
    "PATHS",
    "REFUSED",
    "RESET_AFTER_CHARS",
    "RESULTS_DIR_VARIABLE",
    "SQL_INJECTION",
    "STORE_ENTRY_POINTS",
    "STORE_SCHEMES",
    "SURROGATES",
    "UNEXPECTED_KINDS",
    "USERS",
    "Campaign",
    "CampaignResult",
    "Claim",
    "CliCase",
    "CliRun",
    "Extend",
    "Finding",
    "Finish",
    "GetMany",
    "HandBuiltTask",
    "LeaseSpec",
    "ListDead",
    "NewTask",
    "Purge",
    "Refused",
    "Release",
    "RequeueAbandoned",
    "RequeueDead",
    "RequeueExpired",
    "StoreBroken",
    "StoreCall",
    "StoreChecks",
    "T",
    "Tally",
    "UrlCase",
    "Violation",
    "WaitForWork",
    "after_finish",
    "after_release",
    "beyond_floats",
    "big_ints",
    "check_entry_points",
    "cli_cases",
    "configure",
    "counts",
    "deep_json_text",
    "describe_exception",
    "differing_fields",
    "empty_directory",
    "enqueue_cases",
    "epochs",
    "expect_same",
    "hand_built_tasks",
    "hostile_numbers",
    "hostile_payloads",
    "hostile_text",
    "hostile_times",
    "id_lists",
    "is_finite",
    "is_number",
    "json_text",
    "judge_cli",
    "leaked",
    "lease_specs",
    "live_worker_lists",
    "long_text",
    "main",
    "make_outcome",
    "max_attempts",
    "names",
    "nest",
    "new_tasks",
    "non_finite_times",
    "not_a_status",
    "odd_numbers",
    "odd_times",
    "open_and_close",
    "payload_leaves",
    "payload_texts",
    "plain_id",
    "plant_canaries",
    "priorities",
    "query_pair",
    "repeat",
    "results_directory",
    "run",
    "run_campaign",
    "run_cli_in_process",
    "run_examples",
    "same_value",
    "short",
    "status_lists",
    "store_calls",
    "task_ids",
    "url_cases",
    "wait_timeouts",
    "workers",
    "wrong_types",
]
