"""Hooks, a custom argument, TaskSet and SequentialTaskSet, on_start/on_stop, catch_response.

Shaped like the examples in Locust's documentation (event hooks, "Adding custom arguments",
TaskSets, "Validating responses"). Every hook appends a line to the file named by
COMPAT_HOOK_LOG, so a test can tell which fired, how often, and in which process. Each user
runs ``--iterations`` rounds and then idles, so the number of requests does not depend on
timing: plain Locust and harness must send exactly the same ones.
"""

import json
import os
import random
import uuid
from collections import Counter

from locust import HttpUser, SequentialTaskSet, TaskSet, constant, events, task

requests_seen: Counter[str] = Counter()
runner_asked = False


def note(*words: object) -> None:
    path = os.environ.get("COMPAT_HOOK_LOG")
    if path:
        with open(path, "a") as log:
            log.write(" ".join([str(os.getpid()), *map(str, words)]) + "\n")


@events.init_command_line_parser.add_listener
def _(parser):
    parser.add_argument("--iterations", type=int, default=1, help="Rounds each user runs before it idles")
    parser.add_argument("--greeting", type=str, env_var="COMPAT_GREETING", default="hello", help="Any text")


@events.init.add_listener
def on_locust_init(environment, runner, **kwargs):
    options = environment.parsed_options
    note("init", options.iterations, options.greeting, options.host, type(runner).__name__)


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
def on_request(request_type, name, response_time, response_length, exception, context, **kwargs):
    requests_seen[f"{request_type} {name}"] += 1
    if response_time < 0 or response_length is None:
        note("bad_request_event", name)


def rounds_done(user) -> bool:
    """Count one round; True once the user has run all of them (it idles from then on)."""
    user.rounds = getattr(user, "rounds", 0) + 1
    return user.rounds > user.environment.parsed_options.iterations


class Checkout(SequentialTaskSet):
    @task
    def cart(self):
        if rounds_done(self.user):
            self.interrupt(reschedule=False)
            return
        self.client.get("/cart")

    @task
    def pay(self):
        with self.client.get("/pay", catch_response=True) as response:
            response.failure(f"payment {uuid.uuid4()} declined for order {random.randint(1, 10**6)}")


class Browse(TaskSet):
    @task(3)
    def item(self):
        if rounds_done(self.user):
            return
        self.client.get(f"/item?id={random.randint(1, 100)}", name="/item")

    @task(1)
    def first_task_asks_the_runner(self):
        global runner_asked
        if not runner_asked:
            runner_asked = True
            runner = self.user.environment.runner
            note("runner", runner.state, runner.user_count)


class Shopper(HttpUser):
    fixed_count = 1
    wait_time = constant(0.05)
    tasks = [Checkout]

    def on_start(self):
        self.client.get("/login")

    def on_stop(self):
        # Locust kills its users at the end of a timed run (stop_timeout 0): a request here may or
        # may not complete under plain Locust either, so the hook only says it ran.
        note("on_stop", type(self).__name__)


class Browser(HttpUser):
    weight = 1
    wait_time = constant(0.05)
    tasks = {Browse: 1}
