"""The HTTP gateway: every endpoint mirrored as ``/api/<app>/<endpoint>/<objectid>``."""

from gateway.app import HttpGateway, create_app

__all__ = ["HttpGateway", "create_app"]
