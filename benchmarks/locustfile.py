"""The throughput benchmark's user: one tiny GET, no think time. Used unchanged by plain
Locust (B) and by harness (C), so the two differ only in what runs around the user."""

from locust import FastHttpUser, constant, task


class Hammer(FastHttpUser):
    wait_time = constant(0)

    @task
    def index(self) -> None:
        self.client.get("/", name="/")
