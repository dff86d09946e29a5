"""Fixtures shared by the unit tests: of the state directory (see _state.py), of config files."""

from ._state import child, dead  # noqa: F401 - pytest finds fixtures by their names here
from .test_config import write  # noqa: F401
