"""Users for the control-loop tests: one GET of ``/`` per iteration against tests.ping_target."""

from locust import FastHttpUser, constant, task


class Ping(FastHttpUser):
    """No think time: as fast as the process can go (closed model), or paced (open model)."""

    wait_time = constant(0)

    @task
    def ping(self) -> None:
        self.client.get("/", name="/")


class Idler(FastHttpUser):
    """Half a second of think time: light, steady closed-model load."""

    wait_time = constant(0.5)

    @task
    def ping(self) -> None:
        self.client.get("/", name="/")
