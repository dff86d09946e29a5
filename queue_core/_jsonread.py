"""Reading decoded JSON records: a value missing or of the wrong type is a damaged record (ValueError).

Each ``*_at`` function reads ``data[key]``; without ``default`` the key is required.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_REQUIRED: Any = object()


def json_object(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{what}: expected a JSON object, not {type(value).__name__}")
    return value


def list_at(data: Mapping[str, Any], key: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise ValueError(f"{key!r}: expected a list, not {value!r}")
    return value


def _value(data: Mapping[str, Any], key: str, default: Any) -> Any:
    if key in data:
        return data[key]
    if default is _REQUIRED:
        raise ValueError(f"no {key!r}")
    return default


def str_at(data: Mapping[str, Any], key: str, default: Any = _REQUIRED) -> str:
    value = _value(data, key, default)
    if not isinstance(value, str):
        raise ValueError(f"{key!r}: expected a string, not {value!r}")
    return value


def optional_str_at(data: Mapping[str, Any], key: str) -> str | None:
    return None if data.get(key) is None else str_at(data, key)


def float_at(data: Mapping[str, Any], key: str, default: Any = _REQUIRED) -> float:
    value = _value(data, key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{key!r}: expected a number, not {value!r}")
    return float(value)


def optional_float_at(data: Mapping[str, Any], key: str) -> float | None:
    return None if data.get(key) is None else float_at(data, key)


def int_at(data: Mapping[str, Any], key: str, default: Any = _REQUIRED) -> int:
    value = _value(data, key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key!r}: expected an integer, not {value!r}")
    return value


def optional_int_at(data: Mapping[str, Any], key: str) -> int | None:
    return None if data.get(key) is None else int_at(data, key)


def bool_at(data: Mapping[str, Any], key: str, default: Any = _REQUIRED) -> bool:
    value = _value(data, key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{key!r}: expected true or false, not {value!r}")
    return value


def strs_at(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    values = list_at(data, key)
    if not all(isinstance(value, str) for value in values):
        raise ValueError(f"{key!r}: expected a list of strings")
    return tuple(values)


def counts_of(value: object) -> dict[str, int]:
    counts = json_object(value, "counts")
    return {key: int_at(counts, key) for key in counts}
