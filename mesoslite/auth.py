"""HTTP Basic authentication of frameworks, as Mesos' `--authenticate_http_frameworks` with its
default `basic` authenticator (src/master/flags.cpp, libprocess' BasicAuthenticator): the
`Authorization: Basic` header must name a principal of the `--credentials` file with its
secret, or the answer is 401 with a `WWW-Authenticate` challenge for the realm.

The credentials file is Mesos' JSON format
(https://mesos.apache.org/documentation/latest/authentication/):
`{"credentials": [{"principal": "...", "secret": "..."}]}`; its path may also come from the
MESOSLITE_CREDENTIALS environment variable, so that no secret shows in `ps`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass
from pathlib import Path

import orjson

CREDENTIALS_ENV = "MESOSLITE_CREDENTIALS"
# Realms of Mesos' master (src/master/constants.hpp).
SCHEDULER_REALM = "mesos-master-scheduler"
READWRITE_REALM = "mesos-master-readwrite"


class CredentialsError(ValueError):
    """The credentials file cannot be read or is not Mesos' JSON credentials format."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """The principals allowed in, each with its secret."""

    secrets: dict[str, bytes]

    def authenticate(self, authorization: str | None) -> str | None:
        """The principal an `Authorization` header proves, or None (absent, malformed or wrong).

        The secret is compared in constant time, and an unknown principal costs a comparison
        too, so the answer's timing tells neither the secret nor which principals exist.
        """
        basic = None if authorization is None else decode_basic(authorization)
        if basic is None:
            return None
        principal, secret = basic
        expected = self.secrets.get(principal)
        offered = secret.encode()
        if expected is None:
            hmac.compare_digest(offered, offered)
            return None
        return principal if hmac.compare_digest(offered, expected) else None


def decode_basic(authorization: str) -> tuple[str, str] | None:
    """(principal, secret) of an `Authorization: Basic` value (RFC 7617, UTF-8), or None.

    Hand-written: aiohttp 3.14 deprecates its BasicAuth and has no other decoder.
    """
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    principal, colon, secret = decoded.partition(":")
    return (principal, secret) if colon else None


def challenge(realm: str) -> str:
    """The `WWW-Authenticate` value of a 401."""
    return f'Basic realm="{realm}"'


def load_credentials(location: str) -> Credentials:
    """Read a credentials file (`/path` or `file:///path`); CredentialsError says what is wrong."""
    path = Path(location.removeprefix("file://"))
    try:
        document = orjson.loads(path.read_bytes())
    except OSError as e:
        raise CredentialsError(f"cannot read credentials file {path}: {e.strerror}") from None
    except orjson.JSONDecodeError as e:
        raise CredentialsError(f"credentials file {path} is not JSON: {e}") from None
    entries = document.get("credentials") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise CredentialsError(
            f'credentials file {path}: expected {{"credentials": [{{"principal": ..., '
            f'"secret": ...}}, ...]}} with at least one credential'
        )
    secrets: dict[str, bytes] = {}
    for i, entry in enumerate(entries):
        principal = entry.get("principal") if isinstance(entry, dict) else None
        secret = entry.get("secret") if isinstance(entry, dict) else None
        if not isinstance(principal, str) or not principal or ":" in principal:
            raise CredentialsError(
                f"credentials file {path}: credentials[{i}].principal must be a non-empty"
                " string without ':'"
            )
        if not isinstance(secret, str):
            raise CredentialsError(
                f"credentials file {path}: credentials[{i}].secret must be a string"
            )
        secrets[principal] = secret.encode()
    return Credentials(secrets)
