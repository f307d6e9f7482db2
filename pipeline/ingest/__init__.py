"""Object-store notifications into facegate.assets: normalisation and the webhook bridge."""
