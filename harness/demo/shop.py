"""The demo shop's backend services: catalog, cart and payments, as WSGI apps.

Each runs as its own process (``python -m harness.demo.services <name>``), so that a process
fault hits one dependency at a time. They are deliberately small but behave like real ones
where a load-and-chaos run can see it: a slow search with variance, in-memory state lost on a
restart, a slow payments call with idempotency keys that journals each charge to disk (fsynced).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import time
from collections import OrderedDict

import gevent

from harness.demo.web import JSON, SESSION, App, Request, Response, abort, health_handler, int_field, json_response

__all__ = [
    "MAX_CARTS",
    "MAX_IDEMPOTENCY_KEYS",
    "MAX_REQUEST_SKEW",
    "PRODUCT_COUNT",
    "make_cart",
    "make_catalog",
    "make_payments",
    "make_products",
]

# --------------------------------------------------------------------------------------------
# catalog: a fixed set of products, a lookup and a slower search.
# --------------------------------------------------------------------------------------------

_ADJECTIVES = ["Classic", "Ultra", "Eco", "Smart", "Vintage", "Compact", "Pro", "Deluxe", "Travel", "Solar"]
_NOUNS = [
    "Kettle",
    "Backpack",
    "Lamp",
    "Headphones",
    "Mug",
    "Notebook",
    "Jacket",
    "Blender",
    "Speaker",
    "Watch",
]
_CATEGORIES = {
    "Kettle": "kitchen",
    "Blender": "kitchen",
    "Mug": "kitchen",
    "Backpack": "outdoor",
    "Jacket": "outdoor",
    "Lamp": "home",
    "Notebook": "office",
    "Headphones": "audio",
    "Speaker": "audio",
    "Watch": "accessories",
}
PRODUCT_COUNT = 50


def make_products(count: int = PRODUCT_COUNT, seed: int = 7) -> list[JSON]:
    """The same ``count`` products on every start, so locustfiles and tests can rely on ids 1..count."""
    rng = random.Random(seed)
    names = [f"{a} {n}" for a, n in itertools.product(_ADJECTIVES, _NOUNS)]
    rng.shuffle(names)
    return [
        {
            "id": index,
            "name": name,
            "category": _CATEGORIES[name.split()[-1]],
            "price": round(rng.uniform(4.0, 250.0), 2),
            "currency": "EUR",
            "stock": rng.randint(0, 400),
            "rating": round(rng.uniform(2.5, 5.0), 1),
        }
        for index, name in enumerate(names[:count], start=1)
    ]


def _search_score(product: JSON, terms: list[str]) -> int:
    text = f"{product['name']} {product['category']}".lower()
    return sum(text.count(term) * (3 if term in product["name"].lower() else 1) for term in terms)


def make_catalog(search_delay: tuple[float, float, float] = (0.005, 0.020, 0.008)) -> App:
    """catalog: ``/products``, ``/products/<id>``, ``/search?q=``.

    Bodies for the list and each product are encoded once: the catalog should be cheap, so that
    the gateway (the thing under test) is where time goes. Search sleeps 5-20 ms (triangular,
    mode 8 ms) to stand in for a query against a search index: a realistic slow endpoint.
    """
    products = make_products()
    by_id = {p["id"]: json_response(p) for p in products}
    listing = json_response({"products": products, "count": len(products)})
    low, high, mode = search_delay
    app = App("catalog")

    def list_products(request: Request) -> Response:
        return listing

    def get_product(request: Request, product_id: str) -> Response:
        found = by_id.get(int(product_id))
        if found is None:
            abort(404, f"no product {product_id}")
        return found

    def search(request: Request) -> Response:
        query = request.arg("q").strip()
        terms = [t for t in query.lower().split() if t][:8]
        gevent.sleep(random.triangular(low, high, mode))
        scored = sorted(((_search_score(p, terms), p) for p in products), key=lambda sp: -sp[0])
        hits = [p for score, p in scored if score > 0][:20]
        return json_response({"query": query, "count": len(hits), "results": hits})

    app.add("GET", r"/health", health_handler("catalog"))
    app.add("GET", r"/products", list_products)
    app.add("GET", r"/products/(?P<product_id>\d{1,9})", get_product)
    app.add("GET", r"/search", search)
    return app


# --------------------------------------------------------------------------------------------
# cart: in-memory carts by session.
# --------------------------------------------------------------------------------------------

MAX_CARTS = 100_000  # oldest carts are dropped beyond this: memory stays bounded in long runs


def make_cart(max_carts: int = MAX_CARTS) -> App:
    """cart: ``POST /cart/<session>/items``, ``GET /cart/<session>``, ``DELETE /cart/<session>``.

    State is lost on restart, as an in-memory cache would be; that is part of what a process
    kill does to a real system.
    """
    carts: OrderedDict[str, dict[int, JSON]] = OrderedDict()
    app = App("cart")

    def view(session: str) -> JSON:
        items = list(carts.get(session, {}).values())
        total = round(sum(i["qty"] * i["unit_price"] for i in items), 2)
        return {"session": session, "items": items, "count": sum(i["qty"] for i in items), "total": total}

    def add_item(request: Request, session: str) -> Response:
        payload = request.json()
        product_id = int_field(payload, "product_id", 1, 10**9)
        qty = int_field(payload, "qty", 1, 100)
        price = payload.get("unit_price", 0.0)
        if not isinstance(price, int | float) or isinstance(price, bool) or price < 0:
            abort(400, "unit_price must be a non-negative number")
        cart = carts.setdefault(session, {})
        carts.move_to_end(session)
        item = cart.setdefault(product_id, {"product_id": product_id, "qty": 0, "unit_price": price})
        item["qty"] = min(item["qty"] + qty, 1000)
        while len(carts) > max_carts:
            carts.popitem(last=False)
        return json_response(view(session))

    def get_cart(request: Request, session: str) -> Response:
        return json_response(view(session))

    def delete_cart(request: Request, session: str) -> Response:
        existed = carts.pop(session, None) is not None
        return json_response({"session": session, "deleted": existed})

    app.add("GET", r"/health", health_handler("cart"))
    app.add("POST", rf"/cart/{SESSION}/items", add_item)
    app.add("GET", rf"/cart/{SESSION}", get_cart)
    app.add("DELETE", rf"/cart/{SESSION}", delete_cart)
    return app


# --------------------------------------------------------------------------------------------
# payments: a slow, always-approving charge endpoint with idempotency keys.
# --------------------------------------------------------------------------------------------

MAX_IDEMPOTENCY_KEYS = 50_000
#: How far a charge's ``requested_at`` may lie from payments' own clock (either way), as a
#: signed request's timestamp window does (AWS Signature V4 refuses requests more than 5
#: minutes off: RequestTimeTooSkewed). A skewed clock on either side fails every charge.
MAX_REQUEST_SKEW = 300.0


#: Where payments journals its charges by default (under /tmp, the default safety.allowed_paths).
PAYMENTS_JOURNAL = "/tmp/harness-demo-payments-{port}"
#: The journal is rotated (one old file kept) past this size, so a long demo cannot fill a disk.
JOURNAL_ROTATE_BYTES = 8 << 20


def payments_journal_dir(port: int) -> str:
    return PAYMENTS_JOURNAL.format(port=port)


def _record_charge(directory: str, result: JSON) -> None:
    """Append one charge to ``charges.jsonl`` and fsync it before the charge is approved, as a
    payment service that must never lose one does; opened per charge (an io fault applies to
    files opened after it). Raises OSError when the disk refuses."""
    path = os.path.join(directory, "charges.jsonl")
    with contextlib.suppress(FileNotFoundError):
        if os.stat(path).st_size > JOURNAL_ROTATE_BYTES:
            os.replace(path, path + ".1")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(result, separators=(",", ":")) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def make_payments(delay: tuple[float, float, float] = (0.010, 0.030, 0.015), journal_dir: str | None = None) -> App:
    """payments: ``POST /charge`` answers ``{"status": "approved", "id": ...}`` after 10-30 ms.

    A repeated ``idempotency_key`` returns the first charge: the gateway retries once after a
    timeout, and a paused payments process later answers the abandoned attempt too; neither may
    charge twice. A ``requested_at`` (the caller's wall clock, epoch seconds) more than
    :data:`MAX_REQUEST_SKEW` from payments' own clock is refused with 401, before any charge.
    With ``journal_dir`` every new charge is appended to ``charges.jsonl`` there
    and fsynced before it is approved: a slow disk slows checkouts, and a charge the disk refuses
    is answered 503 ``{"error": "cannot record the charge"}`` (not approved).
    """
    low, high, mode = delay
    charges: OrderedDict[str, JSON] = OrderedDict()
    app = App("payments")
    if journal_dir:
        os.makedirs(journal_dir, exist_ok=True)

    def charge(request: Request) -> Response:
        payload = request.json()
        amount = payload.get("amount")
        if not isinstance(amount, int | float) or isinstance(amount, bool) or amount <= 0:
            abort(400, "amount must be a positive number")
        requested_at = payload.get("requested_at")
        if isinstance(requested_at, int | float) and not isinstance(requested_at, bool):
            skew = time.time() - requested_at
            if abs(skew) > MAX_REQUEST_SKEW:
                state = "expired" if skew > 0 else "not yet valid"
                abort(401, f"request {state}: requested_at is {skew:+.0f} s from payments' clock")
        gevent.sleep(random.triangular(low, high, mode))
        key = str(payload.get("idempotency_key") or "")
        if key and key in charges:
            return json_response(charges[key])
        result = {"status": "approved", "id": f"ch_{random.getrandbits(64):016x}", "amount": amount}
        if journal_dir:
            try:
                _record_charge(journal_dir, {**result, "idempotency_key": key})
            except OSError as exc:
                return json_response({"error": "cannot record the charge", "detail": exc.strerror or str(exc)}, 503)
        if key:
            charges[key] = result
            while len(charges) > MAX_IDEMPOTENCY_KEYS:
                charges.popitem(last=False)
        return json_response(result)

    app.add("GET", r"/health", health_handler("payments"))
    app.add("POST", r"/charge", charge)
    return app
