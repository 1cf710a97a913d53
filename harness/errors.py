"""The one exception tree of harness, and the exit code each class maps to.

::

    HarnessError                      exit 3  (internal error unless a subclass says otherwise)
    ├── ScenarioError                 exit 2  invalid scenario file: one or more located problems
    ├── ConfigError                   exit 2  invalid command line, environment or host configuration
    │   ├── RunNotFound               exit 2  a run asked for by id is neither under runs/ nor in InfluxDB
    │   ├── CapabilityMissing         exit 2  a probe of `harness doctor` found a capability missing
    │   └── ProbeFailed               exit 2  a scenario probe's source did not answer, or its query gave no one number
    ├── RunFailed                     exit 1  the run completed and an SLO failed
    ├── RunAborted                    exit 4  a guard tripped; faults were reverted and load stopped
    ├── RunInvalid                    exit 5  load not delivered or results incomplete
    ├── RunInterrupted                exit 130  Ctrl-C / SIGTERM
    ├── LoadError                     exit 3  a load generator or Locust subprocess failed
    ├── FaultError                    exit 3  a fault could not be injected or reverted
    │   ├── FaultNotApplied           exit 3  an inject changed nothing in the end (journaled reverted)
    │   ├── FaultPartlyApplied        exit 3  an inject applied part of a fault (journaled injected)
    │   │   └── KubeFaultError        exit 3  some selected pods could not be deleted
    │   ├── RevertFailed              exit 3  a revert failed and said why (journaled revert_failed)
    │   └── RecoverFailed             exit 3  harness recover could not revert every outstanding fault
    ├── ResultsError                  exit 3  results could not be written or read
    │   └── TransportError            exit 3  a results server did not take a batch (the writer retries or spools)
    ├── GrafanaError                  exit 3  Grafana could not be reached, or answered an HTTP error
    └── DemoError                     exit 3  the demo shop did not come up

The CLI maps any ``HarnessError`` to its ``exit_code`` and prints its message without a
traceback; anything else is an internal error (exit 3) logged with its traceback to the
debug log only.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "EXIT_ABORTED",
    "EXIT_FAILED",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_INVALID",
    "EXIT_INVALID_INPUT",
    "EXIT_PASSED",
    "CapabilityMissing",
    "ConfigError",
    "DemoError",
    "FaultError",
    "FaultNotApplied",
    "FaultPartlyApplied",
    "GrafanaError",
    "HarnessError",
    "KubeFaultError",
    "LoadError",
    "ProbeFailed",
    "Problem",
    "RecoverFailed",
    "ResultsError",
    "RevertFailed",
    "RunAborted",
    "RunFailed",
    "RunInterrupted",
    "RunInvalid",
    "RunNotFound",
    "ScenarioError",
    "TransportError",
]

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_INVALID_INPUT = 2
EXIT_INTERNAL = 3
EXIT_ABORTED = 4
EXIT_INVALID = 5
EXIT_INTERRUPTED = 130


class HarnessError(Exception):
    """Base of every error harness raises on purpose."""

    exit_code: int = EXIT_INTERNAL


@dataclass(frozen=True)
class Problem:
    """One located problem in an input file: what a user must fix, and where.

    A value given on the command line (``--set``, ``-e``, ``--users`` ...) is located to the
    flag as typed (``flag``; ``line`` and ``column`` are then 0): the file is not where it is wrong.
    """

    file: str
    line: int
    column: int
    path: str
    message: str
    flag: str = ""

    def __str__(self) -> str:
        if self.flag:
            return f"{self.flag}: {self.message}"
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ScenarioError(HarnessError):
    """A scenario file is invalid. Carries every problem found, not only the first."""

    exit_code = EXIT_INVALID_INPUT

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.column, p.path))
        super().__init__("\n".join(str(p) for p in self.problems))


class ConfigError(HarnessError):
    """Command line, environment or host cannot run what was asked (before anything starts)."""

    exit_code = EXIT_INVALID_INPUT


class RunFailed(HarnessError):
    exit_code = EXIT_FAILED


class RunAborted(HarnessError):
    exit_code = EXIT_ABORTED


class RunInvalid(HarnessError):
    exit_code = EXIT_INVALID


class RunInterrupted(HarnessError):
    exit_code = EXIT_INTERRUPTED


class LoadError(HarnessError):
    """A load generator or one of its Locust subprocesses failed."""


class FaultError(HarnessError):
    """A fault could not be injected or reverted."""


class _JournaledFaultError(FaultError):
    """A fault error that carries the details the journal records with it (strings and integers)."""

    def __init__(self, message: str, **details: str | int) -> None:
        super().__init__(message)
        self.details: dict[str, str | int] = details


class FaultNotApplied(_JournaledFaultError):
    """An inject that changed nothing in the end: refused before any change, or undone at once.

    The shared journal steps (:mod:`harness.chaos.steps`) journal the fault as ``reverted``
    with ``details``, so no later revert acts on objects the record names.
    """


class FaultPartlyApplied(_JournaledFaultError):
    """An inject that applied part of a fault (a kill that reached some targets, not all).

    The fault is in effect: the journal steps record it as ``injected`` with ``details``, then raise.
    """


class KubeFaultError(FaultPartlyApplied):
    """Some selected pods could not be deleted; ``details`` says which were (for the journal)."""


class RevertFailed(_JournaledFaultError):
    """A revert that failed and says why; journaled as ``revert_failed`` with ``details``, so the
    next ``harness recover`` retries it."""


class RecoverFailed(FaultError):
    """Some outstanding fault could not be reverted; ``lines`` says what was and was not done.

    Those faults stay journaled (as ``revert_failed``) so the next ``recover`` retries them.
    """

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        super().__init__("\n".join(lines))


class ResultsError(HarnessError):
    """Results could not be written or read."""


class TransportError(ResultsError):
    """A batch was not accepted.

    ``permanent`` means resending the same bytes cannot help (a 4xx such as a parse error, a
    field type conflict or missing permissions): the writer reports it and moves on instead of
    retrying forever.  Otherwise (connection refused, timeout, 5xx, 404 database-not-found) the
    batch is spooled and retried.  ``rejected`` is how many points the server said it dropped
    when it knows (InfluxDB 1.x "partial write ... dropped=N").
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        status: int | None = None,
        rejected: int | None = None,
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.status = status
        self.rejected = rejected


class RunNotFound(ConfigError):
    """The run is not where it was looked for (exit 2)."""


class CapabilityMissing(ConfigError):
    """A capability a fault needs is missing on this host: the message says why and how to fix it.

    ``harness doctor``'s probes raise it and turn it into that capability's reason."""


class ProbeFailed(ConfigError):
    """A scenario probe's source did not answer, or its query gave no single number.

    Before the run (the preflight) it is exit 2 with nothing started; during the run a failed poll
    is recorded as an event and the SLOs on the probe have no data for it."""


class GrafanaError(HarnessError):
    """Grafana could not be reached, or answered an HTTP error (exit 3)."""


class DemoError(HarnessError):
    """The demo did not come up (its supervisor died, or it stayed unhealthy past the timeout)."""
