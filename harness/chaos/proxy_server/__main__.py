"""``python -m harness.chaos.proxy_server``: how the proxy family starts a transparent proxy."""

import sys

from harness.chaos.proxy_server.serve import main

sys.exit(main())
