"""Kubernetes faults on the node's journal: the crash-safety rules of process faults, for pods.

:mod:`harness.chaos.kubernetes` talks to the API server and knows nothing of the journal;
this module journals around it the way :mod:`harness.chaos.process` does around signals:

* ``injecting`` is written (fsynced) before any change, with what a revert needs: the kube
  context and namespace, and for a scale the deployment and its replica count before the
  fault. A crash at any later point leaves enough on disk to restore it.
* ``injected`` follows with what was done (the pods deleted, or the recorded replicas).
* :func:`revert` patches a scale back to the recorded count and journals ``reverted``, or
  ``revert_failed`` (and raises) when it could not; a pod kill has nothing to undo (the
  pods' controller recreates them) and is only marked reverted.

``harness recover`` and the watchdog revert through :func:`revert` with no scenario at
hand: they act only in the kube context the fault was journaled with.
"""

from __future__ import annotations

from collections.abc import Iterable

from harness.chaos import kubernetes as kube
from harness.chaos.journal import FaultRecord, FaultState, Journal
from harness.errors import FaultError, HarnessError

__all__ = ["inject", "is_kube_kind", "revert"]


def is_kube_kind(kind: str) -> bool:
    return kind in kube.KINDS


def inject(
    fault: kube.KubeFault,
    run_id: str,
    journal: Journal,
    *,
    allowed_contexts: Iterable[str],
    lease_until: float | None = None,
) -> FaultRecord:
    """Apply ``fault`` now and return its ``injected`` record. Idempotent per fault name.

    A fault already journaled as injected or reverted is not applied again. One journaled
    as ``injecting`` (an earlier attempt died mid-way) is completed from its record: a scale
    keeps the replica count recorded the first time, a pod kill deletes nothing more.
    """
    previous, settled = journal.previous_inject(run_id, fault.name, fault.kind)
    if settled:
        assert previous is not None
        return previous
    api = kube.connect(allowed_contexts)
    if previous is not None:
        record = previous
        prior: kube.KubeRecord | None = kube.KubeRecord.from_details(fault.name, fault.kind, previous.details)
    else:
        resolution = kube.resolve(fault, api)  # the context and opt-in checks come first
        details: dict[str, str | int] = {
            "target": kube.describe(fault),
            "context": api.context,
            "namespace": resolution.namespace,
        }
        prior = None
        if resolution.kind == kube.SCALE and resolution.replicas is not None:
            details.update(deployment=resolution.deployment or "", replicas=resolution.replicas)
            prior = kube.KubeRecord.from_details(fault.name, fault.kind, details)
        else:
            details["selected"] = ",".join(p.name for p in resolution.pods)
        record = journal.begin(fault.name, fault.kind, details, lease_until)
    try:
        done = kube.inject(fault, api, previous=prior)
    except kube.KubeFaultError as exc:  # some pods deleted, some not: the deleted ones are done
        journal.append(record.advance(FaultState.INJECTED, **exc.record.details()))
        raise
    injected = record.advance(FaultState.INJECTED, **done.details())
    journal.append(injected)
    return injected


def revert(record: FaultRecord, journal: Journal) -> None:
    """Undo the fault ``record`` describes, in the context it was injected in; journal the outcome.

    Safe to call any number of times. Raises ``FaultError`` (after journaling
    ``revert_failed``) when a scale could not be restored, so ``harness recover`` retries.
    """
    latest = journal.latest(record.fault_name) or record
    if latest.state is FaultState.REVERTED:
        return
    done = kube.KubeRecord.from_details(latest.fault_name, latest.kind, latest.details)
    if done.kind == kube.POD_KILL:
        journal.append(latest.advance(FaultState.REVERTED))
        return
    try:
        kube.revert(done, kube.connect([done.context], context=done.context))
    except HarnessError as exc:
        journal.append(latest.advance(FaultState.REVERT_FAILED, error=str(exc)))
        raise FaultError(f"fault '{latest.fault_name}': revert failed: {exc}") from None
    journal.append(latest.advance(FaultState.REVERTED, restored=done.replicas if done.replicas is not None else -1))
