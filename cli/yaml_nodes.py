"""What the YAML readers ask of a node: its tag, its line, and how to name it in an error.

A file is read as a node tree (``yaml.compose``) so that every error names the line of the
offending node (see cli/config_files.py); these helpers are shared by its readers.
"""

from __future__ import annotations

import yaml

__all__ = ["BOOL_TAG", "FLOAT_TAG", "INT_TAG", "NULL_TAG", "STR_TAG", "describe", "is_null", "join", "line"]

NULL_TAG = "tag:yaml.org,2002:null"
BOOL_TAG = "tag:yaml.org,2002:bool"
INT_TAG = "tag:yaml.org,2002:int"
FLOAT_TAG = "tag:yaml.org,2002:float"
STR_TAG = "tag:yaml.org,2002:str"


def is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == NULL_TAG


def line(node: yaml.Node) -> int | None:
    return node.start_mark.line + 1 if node.start_mark is not None else None


def join(field: str | None, key: str) -> str:
    return f"{field}.{key}" if field else key


def describe(node: yaml.Node) -> str:
    """What ``node`` is, for an error: "a list", "an integer 3", "a string 'x'"..."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    kinds = {NULL_TAG: "nothing (null)", BOOL_TAG: "a boolean", INT_TAG: "an integer", FLOAT_TAG: "a number"}
    kind = kinds.get(node.tag, "a string")
    return kind if node.tag == NULL_TAG else f"{kind} {node.value!r}"
