"""Fixtures of the integration tests."""

from tests.integration.disk import disk

__all__ = ["disk"]
