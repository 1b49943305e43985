"""The built-in applications, enabled by default."""

from endpoints.inventory import create_app as create_inventory
from endpoints.system import create_app as create_system

__all__ = ["BUILTIN_APPS", "create_inventory", "create_system"]

BUILTIN_APPS = (create_inventory, create_system)
"""Factories of the built-in applications, in the order they are registered."""
