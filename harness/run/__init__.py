"""One run, from a scenario file to its verdict.

* :mod:`~harness.run.session`: the whole life of a run (checks, baseline, results, the run,
  what it leaves behind); ``harness run`` and ``harness gate`` call :func:`run_session`.
* :mod:`~harness.run.orchestrator`: the plan walked on one clock, and the teardown.
* :mod:`~harness.run.poller`: the poll thread, paced so that the clock's steps go first.
* :mod:`~harness.run.fleet`: the load generators (placement, shares, drains, stop);
  :mod:`~harness.run.stages`: stage shares and when they took effect;
  :mod:`~harness.run.losses`: a generator lost or a process dead, and its load moved.
* :mod:`~harness.run.faults`: the chaos agents and the fault leases.
* :mod:`~harness.run.seconds`: the per-second pipeline, a list of observers.
* :mod:`~harness.run.recorder`: events, points and notes. The typed run summary the session
  builds (``summary.json``) is :mod:`harness.judge.summary`: JUnit, the report, the baseline
  lookup and ``harness runs`` read it without reaching back into this room.
* :mod:`~harness.run.cluster`: Ray start-up and its token check; :mod:`~harness.run.signals`:
  Ctrl-C and SIGTERM; :mod:`~harness.run.nodes` and :mod:`~harness.run.placement`: where
  actors run.
"""
