"""Settings every test session shares. Set before any fixture starts the embedded stack."""

import os

# The expiry timer ticks every second in tests, so an expiry purges within seconds.
os.environ.setdefault("FACEGATE_PRIVACY__EXPIRY_CHECK_INTERVAL_S", "1")
