"""cli.signals.Signals: Ctrl-C reaches the main thread whichever thread the kernel gives it to."""

from __future__ import annotations

import signal
import threading

from cli.signals import Signals

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
