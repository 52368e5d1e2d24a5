"""Typed errors for rejected commands; the HTTP adapter maps each to one status code.

A command that raises one of these has changed nothing.
"""

from __future__ import annotations


class CommandRejected(Exception):
    """Base of every rejection: a message a person can act on."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(CommandRejected):
    """A field of the request is wrong (HTTP 400)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class NotFound(CommandRejected):
    """The named cluster, job or worker does not exist (HTTP 404)."""

    status = 404

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"{kind} {name!r} not found")
        self.kind = kind
        self.name = name


class Conflict(CommandRejected):
    """The request is well formed but the current state forbids it (HTTP 409)."""

    status = 409
