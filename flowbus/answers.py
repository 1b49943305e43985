"""Answers: where a refused or failed call becomes its answer, and an answer its JSON.

:func:`failure` is used by the pipeline's error boundary (:meth:`Dispatcher.handle`) and by the
transports for what never reaches it (a message that does not parse, an HTTP request the router
refuses), so that every error answer gets one errorid and one log line. :func:`encode` is how
every transport turns an answer into its JSON envelope.
"""

from __future__ import annotations

import logging

from flowbus.errors import FlowBusError, InternalError
from flowbus.protocol import Response, encode_response, new_errorid

__all__ = ["encode", "failure", "internal_failure"]

logger = logging.getLogger("flowbus.dispatcher")


def failure(error: FlowBusError, requestid: str | int | None = None, *, peer: str = "") -> Response:
    """The answer of a refused call: ``error`` gets an errorid and is logged once (at ERROR for
    the bus's own failures, with their cause; at INFO for the caller's mistakes)."""
    if error.errorid is None:
        error.errorid = new_errorid()
    level = logging.ERROR if error.http_status >= 500 else logging.INFO
    if logger.isEnabledFor(level):
        cause = error.__cause__ if level == logging.ERROR else None  # a store's failure, kept for the log
        logger.log(
            level,
            "call failed errorid=%s errorcode=%s peer=%s: %s",
            error.errorid,
            error.errorcode,
            peer,
            error.message,
            exc_info=(type(cause), cause, cause.__traceback__) if cause is not None else None,
        )
    return Response(error=error, requestid=requestid)


def internal_failure(what: str, requestid: str | int | None = None) -> Response:
    """The answer of an unexpected exception (call it while handling it): logged with its
    traceback under a fresh errorid, answered INTERNAL_ERROR without details."""
    errorid = new_errorid()
    logger.error("internal error errorid=%s %s", errorid, what, exc_info=True)
    return Response(error=InternalError(errorid=errorid), requestid=requestid)


def encode(response: Response) -> bytes:
    """The envelope of ``response`` as JSON bytes; an answer that is not JSON answers INTERNAL_ERROR."""
    try:
        return encode_response(response)
    except TypeError:  # orjson.JSONEncodeError: the endpoint answered something that is not JSON
        return encode_response(internal_failure("answer is not JSON", response.requestid))
