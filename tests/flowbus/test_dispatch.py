"""The one pipeline: Dispatcher.dispatch answers every call of every transport, and logs what it must."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from flowbus.answers import failure
from flowbus.bus import Bus
from flowbus.cli import build_bus
from flowbus.config import Settings
from flowbus.errors import InternalError, NoSuchEndpoint
from tests.apps import create_app as make_testing_app


def make_bus(tmp_path: Path) -> Bus:
    """A bus (not started: the dispatcher alone is used) with the testing application."""
    bus, _ = build_bus(Settings.load({"data": tmp_path, "no_auth": True}, env={}), [make_testing_app()], transports=())
    return bus


def test_a_server_error_with_a_cause_is_logged_with_its_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An InternalError raised from a store's exception is logged with that exception under its errorid."""
    error = InternalError()
    try:
        raise OSError("disk full")
    except OSError as exc:
        error.__cause__ = exc  # what `raise InternalError() from exc` sets
    with caplog.at_level(logging.ERROR, logger="flowbus.dispatcher"):
        response = failure(error, None)
    assert response.error is error and error.errorid is not None
    [record] = [r for r in caplog.records if error.errorid in r.getMessage()]
    assert record.exc_info is not None and isinstance(record.exc_info[1], OSError)


def test_a_client_error_is_logged_without_a_traceback(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A refusal (status below 500) is logged at INFO without exc_info."""
    with caplog.at_level(logging.INFO, logger="flowbus.dispatcher"):
        failure(NoSuchEndpoint("none"), None)
    assert all(record.exc_info is None for record in caplog.records)
