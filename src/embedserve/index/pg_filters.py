"""``where`` filters (``filters.py``'s grammar) translated to SQL over a ``jsonb`` metadata column.

The translation keeps the Python predicate's semantics exactly: a missing field fails every test
but ``$ne``/``$nin``; ``true`` never equals ``1`` (jsonb compares by type); ``$gt``... compare only
values of the operand's kind (numbers as float8, strings by code point: ``COLLATE "C"``). The
filter is validated by :func:`~embedserve.index.filters.compile_where` first, so a bad one raises
the same :class:`~embedserve.errors.CollectionError`. Field names and values are parameters.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from embedserve.index.filters import compile_where

_CMP = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def _eq(col: str, field: str, value: Any, params: list[Any]) -> str:
    params.extend([field, json.dumps(value)])
    return f"coalesce(({col} -> %s) = %s::jsonb, false)"


def _field(col: str, field: str, op: str, operand: Any, params: list[Any]) -> str:
    if op == "$eq":
        return _eq(col, field, operand, params)
    if op == "$ne":
        return "NOT " + _eq(col, field, operand, params)
    if op in ("$in", "$nin"):
        if not operand:
            return "false" if op == "$in" else "true"
        parts = " OR ".join(_eq(col, field, v, params) for v in operand)
        return f"({parts})" if op == "$in" else f"NOT ({parts})"
    sql_op = _CMP[op]
    if isinstance(operand, str):
        params.extend([field, field, operand])
        return (
            f"(jsonb_typeof({col} -> %s) = 'string'"
            f" AND ({col} ->> %s) COLLATE \"C\" {sql_op} %s COLLATE \"C\")"
        )
    params.extend([field, field, float(operand)])
    return f"(jsonb_typeof({col} -> %s) = 'number' AND ({col} ->> %s)::float8 {sql_op} %s::float8)"


def _where(col: str, where: Mapping[str, Any], params: list[Any]) -> str:
    tests: list[str] = []
    for key, value in where.items():
        if key in ("$and", "$or"):
            joiner = " AND " if key == "$and" else " OR "
            tests.append("(" + joiner.join(_where(col, w, params) for w in value) + ")")
        elif isinstance(value, Mapping):
            tests.extend(_field(col, key, op, operand, params) for op, operand in value.items())
        else:
            tests.append(_field(col, key, "$eq", value, params))
    return tests[0] if len(tests) == 1 else "(" + " AND ".join(tests) + ")"


def where_sql(where: Mapping[str, Any] | str | None, column: str = "metadata") -> tuple[str, list[Any]]:
    """``(SQL boolean expression, parameters)``; ``("true", [])`` for no filter."""
    if where is None:
        return "true", []
    if isinstance(where, str):
        compile_where(where)
        where = json.loads(where)
    compile_where(where)  # validates, with the same errors as the in-process filter
    params: list[Any] = []
    assert isinstance(where, Mapping)
    return _where(column, where, params), params
