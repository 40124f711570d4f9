"""Settings every test package shares, applied before any test module is imported.

kopf fixes a timer's interval when the handler is registered, i.e. when ``mce_operator.handlers`` is first
imported; the end-to-end tests need a fast drift timer, so its tick is set here, ahead of any import.
"""

import os

os.environ.setdefault("MCE_TIMER_TICK", "0.2")
