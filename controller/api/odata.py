"""OData list options: `$filter`, `$select`, `maxresults` and `$skiptoken`. Pure functions."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from controller.errors import BadRequest

Predicate = Callable[[Mapping[str, Any]], bool]

MAX_RESULTS = 1000
_TOKEN = re.compile(r"\s*(\(|\)|,|'(?:[^']|'')*'|[^\s(),']+)")
_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}


@dataclass(frozen=True)
class ListOptions:
    """The parsed options of one list call."""

    max_results: int = MAX_RESULTS
    skip_token: str = ""
    select: tuple[str, ...] = ()
    filter_text: str = ""
    predicate: Predicate | None = None


def bad_query(name: str, reason: str) -> BadRequest:
    """400 InvalidQueryParameterValue naming the parameter."""
    return BadRequest(
        f"The value for one of the query parameters specified in the request URI is invalid: {name}",
        code="InvalidQueryParameterValue",
        values={"QueryParameterName": name, "Reason": reason},
    )


def parse_options(query: Mapping[str, str]) -> ListOptions:
    """Parse list options from query parameters whose names are already lowercase."""
    max_results = _max_results(query.get("maxresults", ""))
    select = tuple(name.strip() for name in query.get("$select", "").split(",") if name.strip())
    filter_text = query.get("$filter", "").strip()
    predicate = parse_filter(filter_text) if filter_text else None
    return ListOptions(max_results, query.get("$skiptoken", ""), select, filter_text, predicate)


def _max_results(text: str) -> int:
    if not text:
        return MAX_RESULTS
    if not text.isdigit() or not 1 <= int(text) <= MAX_RESULTS:
        raise BadRequest(
            "maxresults must be between 1 and 1000",
            code="OutOfRangeQueryParameterValue",
            values={"QueryParameterName": "maxresults"},
        )
    return int(text)


def project(item: dict[str, Any], select: tuple[str, ...]) -> dict[str, Any]:
    """Keep only the selected top-level properties (all when none are selected)."""
    if not select:
        return item
    return {name: value for name, value in item.items() if name in select}


def lookup(item: Mapping[str, Any], path: str) -> Any:
    """The value at a `a/b/c` property path, or None."""
    value: Any = item
    for part in path.split("/"):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def parse_filter(text: str) -> Predicate:
    """Compile a `$filter` expression into a predicate over rendered JSON."""
    tokens = _tokens(text)
    parser = _Parser(tokens)
    predicate = parser.expression()
    if parser.position != len(tokens):
        raise bad_query("$filter", f"unexpected '{tokens[parser.position]}'")
    return predicate


def _tokens(text: str) -> list[str]:
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            if text[position:].strip():
                raise bad_query("$filter", "unbalanced quote")
            break
        tokens.append(match.group(1))
        position = match.end()
    return tokens


def _literal(token: str) -> Any:
    if token.startswith("'"):
        return token[1:-1].replace("''", "'")
    if token in ("true", "false"):
        return token == "true"
    if token.startswith("datetime'"):
        return token[9:-1]
    try:
        return int(token)
    except ValueError:
        pass
    try:
        return float(token)
    except ValueError:
        return token


def _compare(op: Callable[[Any, Any], bool], left: Any, right: Any) -> bool:
    if left is None:
        return op is operator.ne
    if isinstance(left, str) and isinstance(right, str):
        return op(left.lower(), right.lower())
    try:
        return op(left, right)
    except TypeError:
        return False


def _either(first: Predicate, second: Predicate) -> Predicate:
    return lambda item: first(item) or second(item)


def _both(first: Predicate, second: Predicate) -> Predicate:
    return lambda item: first(item) and second(item)


class _Parser:
    """Recursive descent over `or` / `and` / `not` / comparisons / startswith."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.position = 0

    def _peek(self) -> str:
        return self.tokens[self.position].lower() if self.position < len(self.tokens) else ""

    def _take(self) -> str:
        if self.position >= len(self.tokens):
            raise bad_query("$filter", "the expression ends early")
        token = self.tokens[self.position]
        self.position += 1
        return token

    def _expect(self, token: str) -> None:
        if self._take() != token:
            raise bad_query("$filter", f"expected '{token}'")

    def expression(self) -> Predicate:
        left = self._conjunction()
        while self._peek() == "or":
            self._take()
            left = _either(left, self._conjunction())
        return left

    def _conjunction(self) -> Predicate:
        left = self._term()
        while self._peek() == "and":
            self._take()
            left = _both(left, self._term())
        return left

    def _term(self) -> Predicate:
        token = self._peek()
        if token == "(":
            self._take()
            inner = self.expression()
            self._expect(")")
            return inner
        if token == "not":
            self._take()
            negated = self._term()
            return lambda item: not negated(item)
        if token == "startswith":
            return self._startswith()
        return self._comparison()

    def _startswith(self) -> Predicate:
        self._take()
        self._expect("(")
        path = self._take()
        self._expect(",")
        prefix = str(_literal(self._take())).lower()
        self._expect(")")
        return lambda item: str(lookup(item, path) or "").lower().startswith(prefix)

    def _comparison(self) -> Predicate:
        path = self._take()
        op_name = self._take().lower()
        if op_name not in _COMPARISONS:
            raise bad_query("$filter", f"unknown operator '{op_name}'")
        op, value = _COMPARISONS[op_name], _literal(self._take())
        return lambda item: _compare(op, lookup(item, path), value)
