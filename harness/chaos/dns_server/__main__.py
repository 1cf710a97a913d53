"""``python -m harness.chaos.dns_server``: how the dns family starts a responder, and the demo its DNS."""

import sys

from harness.chaos.dns_server.serve import main

sys.exit(main())
