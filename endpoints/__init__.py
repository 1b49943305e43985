"""The built-in applications, enabled by default."""

from endpoints.flows import create_app as create_flows
from endpoints.inventory import create_app as create_inventory
from endpoints.scheduler import create_app as create_scheduler
from endpoints.system import create_app as create_system
from flowbus import Application

__all__ = ["builtin_apps", "create_flows", "create_inventory", "create_scheduler", "create_system"]


def builtin_apps(*, flow_concurrency: int = 64) -> list[Application]:
    """The built-in applications, in the order they are registered.

    Args:
        flow_concurrency: flow executions running at once (``FLOWBUS_FLOW_CONCURRENCY``).
    """
    return [create_inventory(), create_system(), create_flows(flow_concurrency), create_scheduler()]
