"""Values of a flow definition: literals, and ``=`` expressions in JMESPath.

A string that starts with ``=`` is a JMESPath expression, evaluated over the execution's context
``{"input", "vars", "state", "event", "execution"}``; ``==`` starts a literal string that begins
with ``=`` (``"==x"`` is ``"=x"``). Everything else is literal; objects and arrays are walked, and
their keys are literal. Nothing is ever ``eval``-ed.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Protocol

import jmespath
from jmespath.exceptions import ArityError, JMESPathError, UnknownFunctionError
from jmespath.parser import ParsedResult

__all__ = ["ExpressionError", "Value", "compile_value", "evaluate"]


class ExpressionError(Exception):
    """An expression that does not parse, or fails when evaluated; the message names it."""

    def __init__(self, expression: str, reason: str) -> None:
        self.expression = expression
        super().__init__(f"bad expression '={expression}': {reason}")


class Value(Protocol):
    """A compiled value of a definition."""

    def evaluate(self, context: dict[str, Any]) -> Any: ...


class _Literal:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def evaluate(self, context: dict[str, Any]) -> Any:
        return self.value


class _Expression:
    __slots__ = ("parsed", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.parsed = _parse(text)

    def evaluate(self, context: dict[str, Any]) -> Any:
        try:
            value = self.parsed.search(context)
        except (JMESPathError, TypeError, ValueError, KeyError, AttributeError, ArithmeticError) as exc:
            raise ExpressionError(self.text, str(exc) or type(exc).__name__) from None
        if _beyond_64_bits(value):  # sum() or to_number() can make one; no record could hold it
            raise ExpressionError(self.text, "its value holds an integer that does not fit in 64 bits")
        return value


_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
"""The integers a JSON value may hold, as in every message and stored object."""


def _beyond_64_bits(value: Any) -> bool:
    """Whether ``value`` is, or holds, an integer out of :data:`_INT_MIN` .. :data:`_INT_MAX`."""
    pending = [value]
    while pending:
        item = pending.pop()
        if type(item) is int:
            if not _INT_MIN <= item <= _INT_MAX:
                return True
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


_FIELDS = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


class _Path:
    """A plain field path (``vars.device.id``): what JMESPath answers, without its interpreter.

    Each step reads a field of an object; a step from anything else gives null, as in JMESPath.
    """

    __slots__ = ("names", "text")

    def __init__(self, text: str) -> None:
        _parse(text)  # refused exactly as JMESPath refuses it
        self.text = text
        self.names = tuple(text.split("."))

    def evaluate(self, context: dict[str, Any]) -> Any:
        value: Any = context
        for name in self.names:
            if not isinstance(value, dict):
                return None
            value = value.get(name)
        return value


class _Object:
    __slots__ = ("items",)

    def __init__(self, items: dict[str, Value]) -> None:
        self.items = items

    def evaluate(self, context: dict[str, Any]) -> Any:
        return {key: value.evaluate(context) for key, value in self.items.items()}


class _Array:
    __slots__ = ("items",)

    def __init__(self, items: list[Value]) -> None:
        self.items = items

    def evaluate(self, context: dict[str, Any]) -> Any:
        return [value.evaluate(context) for value in self.items]


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> ParsedResult:
    """``text`` compiled by JMESPath, and tried once on an empty context, so that a call of an
    unknown function or with a wrong number of arguments is refused now rather than when a flow
    runs (a call that the empty context never reaches, as in ``a && f(b)``, is found at run time)."""
    try:
        parsed = jmespath.compile(text)
    except JMESPathError as exc:
        raise ExpressionError(text, _reason(exc)) from None
    try:
        parsed.search({})
    except (UnknownFunctionError, ArityError) as exc:
        raise ExpressionError(text, _reason(exc)) from None
    except (JMESPathError, TypeError, ValueError, KeyError, AttributeError, ArithmeticError):
        pass  # a failure on values of the empty context says nothing of the expression itself
    return parsed


def _reason(exc: JMESPathError) -> str:
    lines = str(exc).splitlines()
    first = lines[0].removesuffix(", for expression:").rstrip(" :") if lines else ""
    return first or type(exc).__name__


def compile_value(value: Any) -> Value:
    """Compile ``value`` once; every expression in it is parsed now.

    Raises:
        ExpressionError: an expression does not parse.
    """
    if not _has_expression(value):
        return _Literal(_unescaped(value))
    if isinstance(value, str):
        text = value[1:]
        return _Path(text) if _FIELDS.fullmatch(text) else _Expression(text)
    if isinstance(value, dict):
        return _Object({key: compile_value(item) for key, item in value.items()})
    return _Array([compile_value(item) for item in value])


def evaluate(value: Any, context: dict[str, Any]) -> Any:
    """Compile ``value`` and evaluate it over ``context``."""
    return compile_value(value).evaluate(context)


def _has_expression(value: Any) -> bool:
    if isinstance(value, str):
        return value.startswith("=") and not value.startswith("==")
    if isinstance(value, dict):
        return any(_has_expression(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_expression(item) for item in value)
    return False


def _unescaped(value: Any) -> Any:
    if isinstance(value, str):
        return value[1:] if value.startswith("==") else value
    if isinstance(value, dict):
        return {key: _unescaped(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unescaped(item) for item in value]
    return value
