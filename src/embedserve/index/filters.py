"""``where`` filters on document metadata, in Chroma's syntax, compiled to a Python predicate.

Grammar::

    where    := {field: value, ...}            equality on each field (several fields: all must hold)
              | {field: {op: operand}}         op in $eq $ne $gt $gte $lt $lte $in $nin
              | {"$and": [where, ...]} | {"$or": [where, ...]}

Values are JSON scalars (string, number, boolean, null); ``$in``/``$nin`` take a list of them;
``$gt``... take a number or a string (and compare only with the same kind). A missing field fails
every test except ``$ne`` and ``$nin`` (MongoDB's rule). ``True`` never equals ``1``.
Every malformed filter raises :class:`CollectionError` naming the offending part.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Mapping
from typing import Any

from embedserve.errors import CollectionError

Predicate = Callable[[Mapping[str, Any]], bool]

_MISSING = object()
_ORDER = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}
_OPS = ("$eq", "$ne", "$in", "$nin", *_ORDER)


def _show(x: Any) -> str:
    try:
        s = json.dumps(x)
    except (TypeError, ValueError):
        s = repr(x)
    return s if len(s) <= 60 else s[:57] + "..."


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


def _kind(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "other"
    if isinstance(v, (int, float)):
        return "number"
    return "string" if isinstance(v, str) else "other"


def _field_test(field: str, op: str, operand: Any) -> Predicate:
    where = f"in where[{field!r}]"
    if op in ("$eq", "$ne"):
        if not _is_scalar(operand):
            raise CollectionError(f"bad filter: {op} takes a string, number, boolean or null, got {_show(operand)} {where}")
        if op == "$eq":
            return lambda m: (v := m.get(field, _MISSING)) is not _MISSING and _same(v, operand)
        return lambda m: (v := m.get(field, _MISSING)) is _MISSING or not _same(v, operand)
    if op in ("$in", "$nin"):
        if not isinstance(operand, list) or not all(_is_scalar(x) for x in operand):
            raise CollectionError(f"bad filter: {op} takes a list of scalars, got {_show(operand)} {where}")
        values = list(operand)

        def inside(m: Mapping[str, Any]) -> bool:
            v = m.get(field, _MISSING)
            return v is not _MISSING and any(_same(v, x) for x in values)

        return inside if op == "$in" else (lambda m: not inside(m))
    if op in _ORDER:
        kind = _kind(operand)
        if kind == "other":
            raise CollectionError(f"bad filter: {op} takes a number or a string, got {_show(operand)} {where}")
        cmp = _ORDER[op]
        return lambda m: _kind(v := m.get(field, _MISSING)) == kind and bool(cmp(v, operand))
    raise CollectionError(f"bad filter: unknown operator {op!r} {where}; use one of: {', '.join(_OPS)}")


def _compile(where: Any, path: str) -> Predicate:
    if not isinstance(where, Mapping):
        raise CollectionError(f"bad filter: {path} must be a JSON object, got {_show(where)}")
    if not where:
        raise CollectionError(f"bad filter: {path} is an empty object")
    tests: list[Predicate] = []
    for key, value in where.items():
        if not isinstance(key, str) or not key:
            raise CollectionError(f"bad filter: empty or non-string field name in {path}")
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise CollectionError(f"bad filter: {key} takes a non-empty list of filters, got {_show(value)}")
            parts = [_compile(w, f"{key}[{i}]") for i, w in enumerate(value)]
            # (each closure binds this iteration's parts, not the loop variable)
            tests.append(
                (lambda ps: lambda m: all(p(m) for p in ps))(parts)  # noqa: PLC3002
                if key == "$and"
                else (lambda ps: lambda m: any(p(m) for p in ps))(parts)  # noqa: PLC3002
            )
        elif key.startswith("$"):
            raise CollectionError(f"bad filter: unknown operator {key!r} at the top of {path}; use $and or $or")
        elif isinstance(value, Mapping):
            if not value:
                raise CollectionError(f"bad filter: empty operator object for field {key!r}")
            for op, operand in value.items():
                if not isinstance(op, str) or not op.startswith("$"):
                    raise CollectionError(f"bad filter: expected an operator like $eq for field {key!r}, got {_show(op)}")
                tests.append(_field_test(key, op, operand))
        else:
            tests.append(_field_test(key, "$eq", value))
    if len(tests) == 1:
        return tests[0]
    return lambda m: all(t(m) for t in tests)


def compile_where(where: Mapping[str, Any] | str | None) -> Predicate | None:
    """A predicate over a metadata dict, or ``None`` for no filter. Accepts a JSON string too."""
    if where is None:
        return None
    if isinstance(where, str):
        try:
            where = json.loads(where)
        except ValueError as exc:
            raise CollectionError(f"bad filter: not valid JSON ({exc})") from None
    return _compile(where, "where")
