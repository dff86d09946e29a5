"""The library's public surface: what ``queue_core`` lists, and one home for every exception."""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import subprocess
import sys

import pytest

import queue_core
from queue_core import errors


def test_the_package_lists_only_what_users_call() -> None:
    assert len(queue_core.__all__) <= 16
    for name in queue_core.__all__:
        assert getattr(queue_core, name) is not None
    for internal in ("Scheduler", "TaskEntry", "WaitGroup", "ClaimIndex", "Registry", "ClaimResolver"):
        assert not hasattr(queue_core, internal), f"{internal} is internal: import it by its full path"


def test_every_exception_lives_in_errors_and_derives_from_queue_error() -> None:
    modules = [importlib.import_module(f"queue_core.{m.name}") for m in pkgutil.iter_modules(queue_core.__path__)]
    classes = {
        name: value
        for module in modules
        for name, value in vars(module).items()
        if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__.startswith("queue_core")
    }
    assert classes, "no module of queue_core was looked at"
    for name, cls in classes.items():
        assert cls.__module__ == "queue_core.errors", f"{name} is defined in {cls.__module__}"
        assert issubclass(cls, errors.QueueError), name
    assert set(errors.__all__) == {
        n
        for n, v in vars(errors).items()
        if inspect.isclass(v) and issubclass(v, Exception) and v.__module__ == "queue_core.errors"
    }
    for name in errors.__all__:  # importable from the package too, as before
        assert getattr(queue_core, name) is getattr(errors, name)


@pytest.mark.parametrize("builtin", [ValueError, TypeError])
def test_a_bad_argument_is_the_library_s_error_and_the_builtin_one(builtin: type[Exception]) -> None:
    with pytest.raises(errors.InvalidArgumentError) as caught:
        queue_core.TaskQueue(0)
    assert isinstance(caught.value, builtin)


def test_every_module_imports_on_its_own_and_the_package_imports_little() -> None:
    """The package imports its heavier parts when first asked for (``project-manager claim``
    needs none of them), so no other import may hide a cycle between modules: each is imported
    first, in a fresh interpreter."""
    names = [m.name for m in pkgutil.iter_modules(queue_core.__path__) if not m.name.startswith("_")]
    script = f"""
import sys
for name in {names!r}:
    for loaded in [m for m in sys.modules if m == "queue_core" or m.startswith("queue_core.")]:
        del sys.modules[loaded]
    __import__("queue_core." + name)
import queue_core
for loaded in [m for m in sys.modules if m.startswith("queue_core.")]:
    del sys.modules[loaded]
del sys.modules["queue_core"]
import queue_core
print(sorted(m for m in sys.modules if m.startswith("queue_core.")))
"""
    # Each module is imported afresh again and again: from its bytecode, written by the first.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "queue_core.queue" not in done.stdout  # the package alone stays light
    assert queue_core.TaskQueue.__name__ == "TaskQueue"  # and gives every name of __all__ when asked
