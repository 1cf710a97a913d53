"""The DNS responder's control API, from the client side (see :mod:`harness.chaos.control_client`)."""

from __future__ import annotations

from harness.chaos.control_client import CONTROL_TIMEOUT, ControlClient, split_address

__all__ = ["CLIENT", "CONTROL_TIMEOUT", "delete", "health", "put", "split_address"]

CLIENT = ControlClient(noun="DNS responder", short="DNS responder")
put = CLIENT.put
delete = CLIENT.delete
health = CLIENT.health
