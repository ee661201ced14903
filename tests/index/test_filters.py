from __future__ import annotations

import pytest

from embedserve.errors import CollectionError
from embedserve.index.filters import compile_where

DOCS = [
    {"kind": "a", "n": 1, "flag": True},
    {"kind": "b", "n": 5, "flag": False},
    {"kind": "c", "n": 10},
    {"n": "10"},
    {},
]


def match(where: object) -> list[int]:
    p = compile_where(where)  # type: ignore[arg-type]
    assert p is not None
    return [i for i, d in enumerate(DOCS) if p(d)]


OPERATOR_CASES = [  # also run as SQL over jsonb (test_postgres_backend.py)
    ({"kind": "a"}, [0]),
    ({"kind": {"$eq": "b"}}, [1]),
    ({"kind": {"$ne": "a"}}, [1, 2, 3, 4]),
    ({"kind": {"$in": ["a", "c"]}}, [0, 2]),
    ({"kind": {"$nin": ["a", "c"]}}, [1, 3, 4]),
    ({"n": {"$gt": 1}}, [1, 2]),
    ({"n": {"$gte": 1}}, [0, 1, 2]),
    ({"n": {"$lt": 10}}, [0, 1]),
    ({"n": {"$lte": 10}}, [0, 1, 2]),
    ({"n": {"$gte": "1"}}, [3]),  # strings compare with strings only
    ({"n": {"$gt": 1, "$lt": 10}}, [1]),
    ({"flag": True}, [0]),
    ({"n": True}, []),  # True is not 1
    ({"n": 1}, [0]),
    ({"$and": [{"n": {"$gt": 1}}, {"kind": {"$ne": "c"}}]}, [1]),
    ({"$or": [{"kind": "a"}, {"n": 10}]}, [0, 2]),
    ({"kind": "a", "n": 5}, []),
    ('{"kind": "b"}', [1]),
]


@pytest.mark.parametrize("where,expected", OPERATOR_CASES)
def test_operators(where: object, expected: list[int]) -> None:
    assert match(where) == expected


@pytest.mark.parametrize(
    "where,msg",
    [
        ([], "JSON object"),
        ({}, "empty"),
        ({"$not": {}}, "unknown operator '\\$not'"),
        ({"kind": {"$regex": "a"}}, "unknown operator '\\$regex'"),
        ({"kind": {"$in": "a"}}, "\\$in takes a list"),
        ({"n": {"$gt": None}}, "\\$gt takes a number or a string"),
        ({"n": {"$eq": [1]}}, "\\$eq takes"),
        ({"$and": {}}, "non-empty list"),
        ({"$or": [{"a": 1}, 3]}, "\\$or\\[1\\] must be a JSON object"),
        ({"kind": {}}, "empty operator"),
        ({"kind": {"eq": 1}}, "expected an operator"),
        ("{nope", "not valid JSON"),
    ],
)
def test_bad_filters_name_the_problem(where: object, msg: str) -> None:
    with pytest.raises(CollectionError, match=msg):
        compile_where(where)  # type: ignore[arg-type]


def test_none_is_no_filter() -> None:
    assert compile_where(None) is None
