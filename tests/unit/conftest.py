"""Fixtures shared by the unit tests of the state directory (see _state.py)."""

from ._state import child, dead  # noqa: F401 - pytest finds fixtures by their names here
