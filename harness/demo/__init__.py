"""The local demo system: a small shop of HTTP services (gateway, catalog, cart, payments) under a
supervisor that restarts what dies, so that ``make demo`` and the end-to-end tests have a real
target with real dependencies to load and to break. See :mod:`harness.demo.control`."""
