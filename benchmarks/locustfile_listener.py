"""benchmarks/locustfile.py's user plus one module-level request listener (a counter by name), as
locustfiles commonly have: what ``per_request.py --listener`` measures the per-request cost of."""

from collections import Counter

from locust import FastHttpUser, constant, events, task

seen: Counter[str] = Counter()


@events.request.add_listener
def on_request(request_type, name, response_time, response_length, exception=None, **kwargs):
    seen[name] += 1


class Hammer(FastHttpUser):
    wait_time = constant(0)

    @task
    def index(self) -> None:
        self.client.get("/", name="/")
