"""FlowBus errors: one exception class per wire ``errorcode``.

The hierarchy:

* FlowBusError                      INTERNAL_ERROR (500), the base
  * InvalidRequest                  INVALID_REQUEST (400)
    * MissingObjectId               MISSING_OBJECTID (400)
  * InvalidData                     INVALID_DATA (422)
  * NoSuchEndpoint                  NO_SUCH_ENDPOINT (404)
  * MethodNotSupported              METHOD_NOT_SUPPORTED (405)
  * DoesNotExist                    DO_NOT_EXIST (404)
  * Conflict                        CONFLICT (409)
  * Gone                            GONE (410)
  * AuthRequired                    AUTH_REQUIRED (401)
  * AuthFailed                      AUTH_FAILED (401)
  * PermissionDenied                PERMISSION_DENIED (403)
  * TooLarge                        TOO_LARGE (413)
  * RateLimited                     RATE_LIMITED (429)
  * Timeout                         TIMEOUT (504)
  * Unavailable                     UNAVAILABLE (503)
  * InternalError                   INTERNAL_ERROR (500)

Transports render these; nobody builds an error envelope by hand. The message of an
error is shown to the caller, so it never holds tracebacks, SQL, paths or secrets.
"""

from __future__ import annotations

__all__ = [
    "AuthFailed",
    "AuthRequired",
    "Conflict",
    "DoesNotExist",
    "FlowBusError",
    "Gone",
    "InternalError",
    "InvalidData",
    "InvalidRequest",
    "MethodNotSupported",
    "MissingObjectId",
    "NoSuchEndpoint",
    "PermissionDenied",
    "RateLimited",
    "Timeout",
    "TooLarge",
    "Unavailable",
    "error_class",
]


class FlowBusError(Exception):
    """Base of every error a call can answer.

    Attributes:
        errorcode: the stable code clients branch on.
        http_status: the HTTP status the gateway answers with.
        message: the human-readable text sent to the caller.
        errorid: set when the error is answered: the UUID logged with the details.
        requestid: the caller's requestid, when known, so the answer can be matched.
        retry_after: seconds after which a retry may succeed (RATE_LIMITED, UNAVAILABLE).
    """

    errorcode = "INTERNAL_ERROR"
    http_status = 500
    default_message = "Internal error"

    def __init__(
        self,
        message: str | None = None,
        *,
        errorid: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.errorid = errorid
        self.requestid: str | int | None = None
        self.retry_after = retry_after
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, errorcode={self.errorcode!r})"


class InvalidRequest(FlowBusError):
    """The message is not a valid request envelope."""

    errorcode = "INVALID_REQUEST"
    http_status = 400
    default_message = "Invalid request"


class MissingObjectId(InvalidRequest):
    """The method needs an ``objectid`` and none was given."""

    errorcode = "MISSING_OBJECTID"
    http_status = 400
    default_message = "This method needs an objectid"


class InvalidData(FlowBusError):
    """``data`` does not satisfy the endpoint's schema."""

    errorcode = "INVALID_DATA"
    http_status = 422
    default_message = "Invalid data"

    def __init__(self, message: str | None = None, *, field: str | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]  # FlowBusError checks its own keywords
        self.field = field


class NoSuchEndpoint(FlowBusError):
    """No endpoint is registered under that name."""

    errorcode = "NO_SUCH_ENDPOINT"
    http_status = 404
    default_message = "No such endpoint"


class MethodNotSupported(FlowBusError):
    """The endpoint does not take that method (or the HTTP verb cannot carry it)."""

    errorcode = "METHOD_NOT_SUPPORTED"
    http_status = 405
    default_message = "Method not supported by this endpoint"


class DoesNotExist(FlowBusError):
    """No object with that id exists in that namespace."""

    errorcode = "DO_NOT_EXIST"
    http_status = 404
    default_message = "Object does not exist"


class Conflict(FlowBusError):
    """Duplicate id, or a version mismatch."""

    errorcode = "CONFLICT"
    http_status = 409
    default_message = "Conflict"


class Gone(FlowBusError):
    """What was asked for is no longer kept (a change log position older than its retention)."""

    errorcode = "GONE"
    http_status = 410
    default_message = "No longer kept"


class AuthRequired(FlowBusError):
    """No token or credentials were given."""

    errorcode = "AUTH_REQUIRED"
    http_status = 401
    default_message = "Authentication required"


class AuthFailed(FlowBusError):
    """Bad, tampered or expired token, or wrong credentials."""

    errorcode = "AUTH_FAILED"
    http_status = 401
    default_message = "Authentication failed"


class PermissionDenied(FlowBusError):
    """Authenticated, but not allowed to do this."""

    errorcode = "PERMISSION_DENIED"
    http_status = 403
    default_message = "Permission denied"


class TooLarge(FlowBusError):
    """The message or body is over the configured size limit."""

    errorcode = "TOO_LARGE"
    http_status = 413
    default_message = "Message too large"


class RateLimited(FlowBusError):
    """Too many calls or login attempts; ``retry_after`` says when to try again."""

    errorcode = "RATE_LIMITED"
    http_status = 429
    default_message = "Too many requests"


class Timeout(FlowBusError):
    """The endpoint did not answer within the call timeout."""

    errorcode = "TIMEOUT"
    http_status = 504
    default_message = "The endpoint did not answer in time"


class Unavailable(FlowBusError):
    """The bus is shutting down, or a peer it needs is unreachable."""

    errorcode = "UNAVAILABLE"
    http_status = 503
    default_message = "Service unavailable"


class InternalError(FlowBusError):
    """A bug: the details are only in the server log, under the errorid."""


_BY_CODE: dict[str, type[FlowBusError]] = {
    cls.errorcode: cls
    for cls in (
        InvalidRequest,
        MissingObjectId,
        InvalidData,
        NoSuchEndpoint,
        MethodNotSupported,
        DoesNotExist,
        Conflict,
        Gone,
        AuthRequired,
        AuthFailed,
        PermissionDenied,
        TooLarge,
        RateLimited,
        Timeout,
        Unavailable,
        InternalError,
    )
}


def error_class(errorcode: str) -> type[FlowBusError]:
    """Return the exception class for a wire ``errorcode`` (FlowBusError if unknown)."""
    return _BY_CODE.get(errorcode, FlowBusError)
