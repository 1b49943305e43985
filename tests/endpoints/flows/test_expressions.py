"""Flow values: literals, ``==`` escapes and ``=`` JMESPath expressions (compiled once, never eval-ed)."""

from __future__ import annotations

from typing import Any

import jmespath
import pytest

from endpoints.flows.expressions import ExpressionError, compile_value, evaluate

CONTEXT: dict[str, Any] = {
    "input": {"name": "router-1", "count": 3, "items": [{"a": 1}, {"a": 2}]},
    "vars": {"device": {"id": "d1", "tags": ["x", "y"]}},
    "state": {"name": "create"},
    "event": {"input": {"ok": True, "by": "ann"}},
    "execution": {"id": "e1"},
}


@pytest.mark.parametrize("value", ["plain", 3, 2.5, True, None, {"a": [1, "b", {"c": None}]}, [], "a=b"])
def test_literals_are_themselves(value: Any) -> None:
    assert evaluate(value, CONTEXT) == value


def test_a_literal_is_a_constant_not_walked_again() -> None:
    compiled = compile_value({"a": [1, {"b": "c"}], "d": "==e"})
    first = compiled.evaluate(CONTEXT)
    assert first == {"a": [1, {"b": "c"}], "d": "=e"}
    assert compiled.evaluate({}) is first


@pytest.mark.parametrize(("value", "expected"), [("==x", "=x"), ("===x", "==x"), ("==", "=")])
def test_double_equals_escapes_a_literal(value: str, expected: str) -> None:
    assert evaluate(value, CONTEXT) == expected
    assert evaluate({"k": [value]}, CONTEXT) == {"k": [expected]}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=input.name", "router-1"),
        ("=vars.device.tags[1]", "y"),
        ("=input.items[*].a", [1, 2]),
        ("=length(input.items)", 2),
        ("=event.input.ok", True),
        ("=execution", {"id": "e1"}),
        ("=`5`", 5),
        ("=input.count > `2`", True),
    ],
)
def test_expressions_read_the_context(value: str, expected: Any) -> None:
    assert evaluate(value, CONTEXT) == expected


def test_objects_and_arrays_are_walked_and_keys_stay_literal() -> None:
    value = {"=k": "=input.name", "list": ["=vars.device.id", "lit", "==eq", {"n": "=input.count"}], "n": 1}
    assert evaluate(value, CONTEXT) == {"=k": "router-1", "list": ["d1", "lit", "=eq", {"n": 3}], "n": 1}


@pytest.mark.parametrize("value", ["=input.nothing", "=nowhere.at.all", "=input.name.deeper", "=input.items[7]"])
def test_a_missing_path_is_null(value: str) -> None:
    assert evaluate(value, CONTEXT) is None


@pytest.mark.parametrize(
    "path", ["input.name", "input.count.x", "vars.device.tags.x", "vars.device.id", "state", "input.items.a"]
)
def test_plain_paths_answer_as_jmespath(path: str) -> None:
    assert evaluate(f"={path}", CONTEXT) == jmespath.search(path, CONTEXT)


@pytest.mark.parametrize("value", ["=foo[", "=", "=a.b.", "=`bad", "=__import__('os').system('true')"])
def test_an_expression_that_does_not_parse_is_refused_at_compile_time(value: str) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_value({"deep": ["ok", value]})
    assert info.value.expression == value[1:]
    assert str(info.value).startswith(f"bad expression '{value}': ")


def test_the_message_gives_jmespath_reason() -> None:
    with pytest.raises(ExpressionError, match=r"^bad expression '=foo\[': .*[Ii]ncomplete expression"):
        compile_value("=foo[")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("=nope(input)", "Unknown function: nope()"),
        ("=length(a, b)", "function length()"),
        ("=abs()", "function abs()"),
    ],
)
def test_unknown_functions_and_wrong_argument_counts_are_refused_at_compile_time(value: str, reason: str) -> None:
    with pytest.raises(ExpressionError, match="bad expression") as info:
        compile_value(value)
    assert reason in str(info.value)
    assert value in str(info.value)


@pytest.mark.parametrize("value", ["=abs(input.name)", "=length(input.count)", '=max_by(`[{"a": 1}, {"a": "x"}]`, &a)'])
def test_a_failure_when_evaluated_names_the_expression(value: str) -> None:
    compiled = compile_value(value)
    with pytest.raises(ExpressionError) as info:
        compiled.evaluate(CONTEXT)
    assert info.value.expression == value[1:]
    assert f"'{value}'" in str(info.value)


def test_expressions_are_compiled_once_by_text() -> None:
    from endpoints.flows.expressions import _parse

    _parse.cache_clear()
    compile_value({"a": "=length(input.items)", "b": ["=length(input.items)"]})
    compile_value("=length(input.items)")
    info = _parse.cache_info()
    assert (info.misses, info.hits) == (1, 2)


def test_a_compiled_value_evaluates_over_each_context() -> None:
    compiled = compile_value({"who": "=input.name"})
    assert compiled.evaluate({"input": {"name": "a"}}) == {"who": "a"}
    assert compiled.evaluate({"input": {"name": "b"}}) == {"who": "b"}
