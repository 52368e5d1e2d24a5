"""HTTP Basic authentication of frameworks and agents, as Mesos' `--authenticate_http_frameworks`
with its default `basic` authenticator (src/master/flags.cpp, libprocess' BasicAuthenticator)
and its `--authenticate_agents`: the `Authorization: Basic` header must name a principal of the
`--credentials` file with its secret, or the answer is 401 with a `WWW-Authenticate` challenge
for the realm.

The credentials file is Mesos' JSON format
(https://mesos.apache.org/documentation/latest/authentication/):
`{"credentials": [{"principal": "...", "secret": "..."}]}`; its path may also come from the
MESOSLITE_CREDENTIALS environment variable, so that no secret shows in `ps`. An agent presents
one credential, the JSON file of Mesos' agent `--credential` (src/slave/flags.cpp):
`{"principal": "...", "secret": "..."}`, its path also from MESOSLITE_AGENT_CREDENTIAL. Mesos'
agents authenticate with SASL before they register; mesoslite's agent API is HTTP, so its
agents send Basic credentials on every call instead.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

CREDENTIALS_ENV = "MESOSLITE_CREDENTIALS"
AGENT_CREDENTIAL_ENV = "MESOSLITE_AGENT_CREDENTIAL"
# Realms of Mesos' master (src/master/constants.hpp).
SCHEDULER_REALM = "mesos-master-scheduler"
READWRITE_REALM = "mesos-master-readwrite"
# Mesos authenticates agents with SASL, without a realm: this one is mesoslite's.
AGENT_REALM = "mesoslite-master-agent"


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


@dataclass(frozen=True, slots=True)
class Credential:
    """One principal and its secret: what an agent presents to the master."""

    principal: str
    secret: str = field(repr=False)

    def authorization(self) -> str:
        """The `Authorization` header value (RFC 7617, UTF-8)."""
        token = base64.b64encode(f"{self.principal}:{self.secret}".encode()).decode()
        return f"Basic {token}"


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
    path, document = _read_json(location, "credentials")
    entries = document.get("credentials") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise CredentialsError(
            f'credentials file {path}: expected {{"credentials": [{{"principal": ..., '
            f'"secret": ...}}, ...]}} with at least one credential'
        )
    credentials = [
        _credential(f"credentials file {path}", f"credentials[{i}].", entry)
        for i, entry in enumerate(entries)
    ]
    return Credentials({c.principal: c.secret.encode() for c in credentials})


def load_credential(location: str) -> Credential:
    """Read an agent's credential file (`/path` or `file:///path`), as Mesos' agent reads its
    `--credential` (src/credentials/credentials.hpp, readCredential); CredentialsError says what
    is wrong."""
    path, document = _read_json(location, "credential")
    if not isinstance(document, dict):
        raise CredentialsError(
            f'credential file {path}: expected {{"principal": ..., "secret": ...}}'
        )
    return _credential(f"credential file {path}", "", document)


def _read_json(location: str, kind: str) -> tuple[Path, Any]:
    path = Path(location.removeprefix("file://"))
    try:
        return path, orjson.loads(path.read_bytes())
    except OSError as e:
        raise CredentialsError(f"cannot read {kind} file {path}: {e.strerror}") from None
    except orjson.JSONDecodeError as e:
        raise CredentialsError(f"{kind} file {path} is not JSON: {e}") from None


def _credential(where: str, prefix: str, entry: Any) -> Credential:
    principal = entry.get("principal") if isinstance(entry, dict) else None
    secret = entry.get("secret") if isinstance(entry, dict) else None
    if not isinstance(principal, str) or not principal or ":" in principal:
        raise CredentialsError(f"{where}: {prefix}principal must be a non-empty string without ':'")
    if not isinstance(secret, str):
        raise CredentialsError(f"{where}: {prefix}secret must be a string")
    return Credential(principal, secret)
