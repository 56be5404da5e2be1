"""The one error tree of cenmesh, typed by who is at fault.

::

    CenmeshError
    ├── LocalProtocolError        our own caller asked for something PROTOCOL.md forbids
    │   └── RecordRefused         an officer's record fails validation before sealing (field, why)
    └── RemoteProtocolError       bytes from elsewhere do not follow PROTOCOL.md
        ├── MalformedJSON         not canonical-safe JSON (float, NaN, huge integer, duplicate key)
        ├── InvalidRecord         a record inside a payload fails validation (field, why)
        ├── InvalidDescriptor     a descriptor is badly shaped, forged or not trusted (reason)
        ├── InvalidBundle         any way a bundle is forged, damaged, stale or unreadable (reason)
        ├── InvalidMessage        a federation API message is badly shaped (field, why)
        └── InvalidSignature      an HTTP request signature fails (reason)

Remote garbage raises a ``RemoteProtocolError`` and nothing else; the node maps
it to an HTTP status in one place. ``InvalidBundle`` and ``InvalidSignature``
are deliberately opaque: ``reason`` is a short stable code that may go back to
the peer, ``detail`` is for the local log only.
"""

from __future__ import annotations


class CenmeshError(Exception):
    """Root of every error cenmesh raises on purpose."""


class LocalProtocolError(CenmeshError):
    """Our own side tried to do something the protocol forbids."""


class RemoteProtocolError(CenmeshError):
    """Input that came from outside does not follow the protocol."""


class _FieldError:
    """Mixin for validation errors that name a field and say what was wrong."""

    field: str
    why: str

    def _init_field(self, field: str, why: str) -> str:
        self.field = field
        self.why = why
        return f"{field}: {why}" if field else why


class RecordRefused(LocalProtocolError, _FieldError):
    """A record written on this node fails validation; it is never sealed."""

    def __init__(self, field: str, why: str) -> None:
        super().__init__(self._init_field(field, why))


class MalformedJSON(RemoteProtocolError):
    """Bytes that are not JSON this protocol accepts."""


class InvalidRecord(RemoteProtocolError, _FieldError):
    """A record fails validation; ``field`` is a dotted path such as ``route.departure``."""

    def __init__(self, field: str, why: str) -> None:
        super().__init__(self._init_field(field, why))


class InvalidMessage(RemoteProtocolError, _FieldError):
    """A federation API request or answer is badly shaped."""

    def __init__(self, field: str, why: str) -> None:
        super().__init__(self._init_field(field, why))


class _Opaque(RemoteProtocolError):
    """An error whose ``reason`` is a short code and whose ``detail`` stays local."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


class InvalidDescriptor(_Opaque):
    """A node descriptor is malformed, forged, conflicting or not trusted."""


class InvalidBundle(_Opaque):
    """A bundle is malformed, forged, damaged, out of time or cannot be opened.

    Reason codes: ``too-large``, ``shape``, ``unknown-origin``, ``revoked-origin``,
    ``signature``, ``from-future``, ``expired``, ``lifetime``, ``not-recipient``,
    ``decrypt``, ``payload``.
    """


class InvalidSignature(_Opaque):
    """An HTTP request signature (PROTOCOL.md section 5) fails.

    Reason codes: ``missing``, ``malformed``, ``unknown-key``, ``stale``, ``expired``,
    ``replayed``, ``digest``, ``signature``.
    """
