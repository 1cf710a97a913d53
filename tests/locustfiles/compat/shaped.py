"""A LoadTestShape, FastHttpUser, and a custom client that fires events.request itself.

Shaped like Locust's examples (custom_shape/stages.py, fast_http_locust.py,
custom_xmlrpc_client): the shape steps from 2 to 4 users and ends at 5 s; the custom client
times a call and reports it through ``events.request.fire``. Hooks log to COMPAT_HOOK_LOG.
"""

import json
import os
import time
from collections import Counter

from locust import FastHttpUser, LoadTestShape, User, constant, events, task

requests_seen: Counter[str] = Counter()


def note(*words: object) -> None:
    path = os.environ.get("COMPAT_HOOK_LOG")
    if path:
        with open(path, "a") as log:
            log.write(" ".join([str(os.getpid()), *map(str, words)]) + "\n")


@events.init.add_listener
def on_locust_init(environment, **kwargs):
    note("init", type(environment.shape_class).__name__)


@events.test_start.add_listener
def on_test_start(environment, **kwargs):
    note("test_start")


@events.test_stop.add_listener
def on_test_stop(environment, **kwargs):
    note("test_stop")


@events.quitting.add_listener
def on_quitting(environment, **kwargs):
    note("quitting", json.dumps(requests_seen, sort_keys=True))


@events.request.add_listener
def on_request(request_type, name, **kwargs):
    requests_seen[f"{request_type} {name}"] += 1


class StagesShape(LoadTestShape):
    """Locust's own stages example: each stage holds until its (cumulative) duration."""

    stages = [
        {"duration": 2, "users": 2, "spawn_rate": 10},
        {"duration": 5, "users": 4, "spawn_rate": 10},
    ]

    def tick(self):
        run_time = self.get_run_time()
        for stage in self.stages:
            if run_time < stage["duration"]:
                return (stage["users"], stage["spawn_rate"])
        return None


class TimedClient:
    """A client for something that is not HTTP: it times each call and reports it as a request."""

    def __init__(self, host):
        self.host = host

    def compute(self, n):
        start = time.perf_counter()
        exception = None
        try:
            if n < 0:
                raise ValueError("negative")
            sum(range(n))
        except ValueError as error:
            exception = error
        events.request.fire(
            request_type="custom",
            name="compute",
            response_time=(time.perf_counter() - start) * 1000,
            response_length=0,
            exception=exception,
            context={},
        )


class Api(FastHttpUser):
    wait_time = constant(0.1)

    @task
    def status(self):
        self.client.get("/api/status")


class Worker(User):
    wait_time = constant(0.1)

    def __init__(self, environment):
        super().__init__(environment)
        self.client = TimedClient(self.host)

    @task
    def compute(self):
        self.client.compute(1000)
