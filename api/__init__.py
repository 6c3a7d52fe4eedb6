"""Carteco's HTTP service (FastAPI): build it with `api.factory.create_app(settings)`."""
