"""cli.signals.Signals: Ctrl-C reaches the main thread whichever thread the kernel gives it to."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
from collections.abc import Iterator

import pytest

from cli import signals as signals_module
from cli.signals import STOPS, Signals, note_early

from ..conftest import WAIT


def test_a_signal_delivered_to_another_thread_still_wakes_the_main_thread() -> None:
    """The kernel may hand a process-wide SIGINT to any of the process's threads."""
    release = threading.Event()

    def run_until_released() -> None:
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # this thread, not the main one
        release.wait(WAIT)

    with Signals() as signals:
        try:
            assert signals.wait_for(run_until_released) == signal.SIGINT
        finally:
            release.set()


def test_the_run_ending_first_is_not_an_interruption() -> None:
    with Signals() as signals:
        assert signals.wait_for(lambda: None) is None


def test_other_signals_with_handlers_are_not_an_interruption() -> None:
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: None)

    def signal_then_finish() -> None:
        # Delivered to this thread before pthread_kill returns: its byte is in the pipe first.
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)

    try:
        with Signals() as signals:
            assert signals.wait_for(signal_then_finish) is None
    finally:
        signal.signal(signal.SIGUSR1, previous)


@pytest.fixture(autouse=True)
def stop_handlers() -> Iterator[None]:
    """A test may leave the stop signals ignored (what some check), or one noted: put them back."""
    previous = {sig: signal.getsignal(sig) for sig in STOPS}
    early = list(signals_module._early)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signals_module._early[:] = early


def test_once_a_stop_signal_came_the_others_are_ignored_until_the_process_ends() -> None:
    """Before: the handlers were put back on leaving, so a second Ctrl-C during the summary or the
    exit killed the command: a traceback, a wrong exit code, or no summary."""
    with Signals() as signals:
        signal.raise_signal(signal.SIGINT)
        assert signals.wait(WAIT) == signal.SIGINT
    for sig in STOPS:
        assert signal.getsignal(sig) is signal.SIG_IGN
    signal.raise_signal(signal.SIGTERM)  # ignored: this test goes on


def test_a_stop_signal_noted_before_a_command_waits_is_seen_as_it_starts() -> None:
    """Before: a SIGTERM during start-up (importing, reading the batch) killed the command outright."""
    signals_module._early.clear()
    note_early()
    signal.raise_signal(signal.SIGTERM)  # noted, not fatal
    ran = threading.Event()
    with Signals() as signals:
        assert signals.caught == signal.SIGTERM
        assert signals.wait_for(ran.set) == signal.SIGTERM
    assert not ran.is_set()  # nothing is started once told to stop


def test_a_stop_signal_that_comes_after_the_last_wait_is_seen_by_the_next_one() -> None:
    """Before: a SIGTERM after the summary was written, before its Signals was left, went to a pipe
    nobody read again; the end of the run (run_end hooks, on_finish) then waited as if none came."""
    signals_module._early.clear()
    note_early()
    with Signals() as signals:
        assert signals.wait(0) is None
        signal.raise_signal(signal.SIGTERM)  # nothing waits any more in this one
    with Signals() as later:
        assert later.caught == signal.SIGTERM
    for sig in STOPS:
        assert signal.getsignal(sig) is signal.SIG_IGN  # stopping: stays so


def test_work_stuck_on_a_reader_that_went_away_is_given_up_once_a_signal_came() -> None:
    """Before: a summary written to a pipe nobody read blocked the command, deaf to every signal.
    The write is a blocking one, in a thread: no O_NONBLOCK is set on a descriptor others share."""
    reader, writer = os.pipe()  # never read
    try:
        with Signals(patience=0.1) as signals:
            signal.raise_signal(signal.SIGINT)  # in the pipe: seen as soon as the work is waited for
            assert signals.finish(functools.partial(_write_quietly, writer)) is False
            assert signals.caught == signal.SIGINT
            assert os.get_blocking(writer)
    finally:
        os.close(reader)
        os.close(writer)


def test_the_patience_after_a_signal_is_counted_once_for_everything_that_waits() -> None:
    """Before: each bounded wait had its own 2 s, so a run that went on writing took 6 s to end.
    With the patience spent, every further wait gives up at once (pytest-timeout would catch a hang)."""
    reader, writer = os.pipe()
    try:
        with Signals(patience=0.0) as signals:
            signal.raise_signal(signal.SIGINT)
            assert [signals.finish(functools.partial(_write_quietly, writer)) for _ in range(5)] == [False] * 5
    finally:
        os.close(reader)
        os.close(writer)


def _write_quietly(fd: int) -> None:
    """More than a pipe holds; a reader that goes away ends it (as the command's writers handle it)."""
    with contextlib.suppress(OSError):
        os.write(fd, b"x" * (1 << 20))
