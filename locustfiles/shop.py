"""Users of the demo shop (``harness demo up``), as an ordinary Locust locustfile.

- ``Shopper``: a person shopping, with think time: browses (home, product list, product pages),
  searches, adds to the cart, looks at the cart and sometimes checks out. Use it for realistic
  closed-model scenarios and for chaos runs: checkout is the path that goes through payments.
- ``Browser``: product pages only, no think time. Use it for throughput (requests/s) scenarios.
- ``Buyer``: checks out again and again with a short pause: tens of checkouts/s, the load that
  shows how checkout fails (scenarios/demo-breaker.yaml: fast, behind the gateway's breaker).

Request names are fixed, so a run has a few stable endpoints rather than one per URL:
``/``, ``/api/products``, ``/api/products/[id]``, ``/api/search``, ``/api/cart/[session]/items``,
``/api/cart/[session]``, ``/api/checkout/[session]``. Any status >= 400 counts as a failure
(a 503 from checkout when payments is down included). Imports nothing from harness: it runs
under plain ``locust -f locustfiles/shop.py --host http://127.0.0.1:8700`` too.
"""

from __future__ import annotations

import random
import uuid

from locust import FastHttpUser, between, constant, task

PRODUCT_IDS = list(range(1, 51))  # the demo catalog's ids: fixed, see harness.demo.services
# A few products get most of the views, as in any shop: Zipf-like weights over the ids.
PRODUCT_WEIGHTS = [1.0 / rank**1.1 for rank in range(1, len(PRODUCT_IDS) + 1)]
SEARCH_TERMS = [
    "kettle",
    "smart lamp",
    "travel backpack",
    "headphones",
    "eco",
    "pro watch",
    "kitchen",
    "audio",
    "compact speaker",
    "vintage jacket",
    "solar",
    "notebook",
    "gift ideas",  # finds nothing: an empty result is a normal answer too
]


class ShopUser(FastHttpUser):
    """Common ground of the shop's users: the default host and product picking."""

    abstract = True
    host = "http://127.0.0.1:8700"

    def pick_product(self) -> int:
        return random.choices(PRODUCT_IDS, weights=PRODUCT_WEIGHTS, k=1)[0]

    def view_product(self) -> None:
        self.client.get(f"/api/products/{self.pick_product()}", name="/api/products/[id]")


class Shopper(ShopUser):
    """A shopper with 0.5-1.5 s of think time between actions and a cart of their own."""

    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        self.session = f"s{uuid.uuid4().hex[:16]}"

    @task(1)
    def home(self) -> None:
        self.client.get("/", name="/")

    @task(1)
    def product_list(self) -> None:
        self.client.get("/api/products", name="/api/products")

    @task(4)
    def product_page(self) -> None:
        self.view_product()

    @task(3)
    def search(self) -> None:
        self.client.get("/api/search", params={"q": random.choice(SEARCH_TERMS)}, name="/api/search")

    @task(2)
    def add_to_cart(self) -> None:
        self._add_item()

    @task(1)
    def view_cart(self) -> None:
        self.client.get(f"/api/cart/{self.session}", name="/api/cart/[session]")

    @task(1)
    def checkout(self) -> None:
        """Add an item first, so the cart is never empty and checkout always reaches payments."""
        if self._add_item():
            self.client.post(f"/api/checkout/{self.session}", name="/api/checkout/[session]")

    def _add_item(self) -> bool:
        body = {"product_id": self.pick_product(), "qty": random.randint(1, 3)}
        response = self.client.post(f"/api/cart/{self.session}/items", json=body, name="/api/cart/[session]/items")
        return bool(response.ok)


class Browser(ShopUser):
    """Reads product pages back to back, no think time: as many requests as one user can send."""

    wait_time = constant(0)

    @task(9)
    def product_page(self) -> None:
        self.view_product()

    @task(1)
    def product_list(self) -> None:
        self.client.get("/api/products", name="/api/products")


class Buyer(ShopUser):
    """Checks out again and again, 0.1-0.3 s apart: one item in the cart, then checkout until
    an order is confirmed (a failed checkout keeps the cart), then a new item."""

    wait_time = between(0.1, 0.3)

    def on_start(self) -> None:
        self.session = f"b{uuid.uuid4().hex[:16]}"
        self.filled = False

    @task
    def buy(self) -> None:
        if not self.filled:
            body = {"product_id": self.pick_product(), "qty": 1}
            added = self.client.post(f"/api/cart/{self.session}/items", json=body, name="/api/cart/[session]/items")
            self.filled = bool(added.ok)
        if self.filled:
            order = self.client.post(f"/api/checkout/{self.session}", name="/api/checkout/[session]")
            self.filled = not order.ok  # a confirmed order empties the cart
