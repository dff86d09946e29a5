"""A fake agent whose child tries to outlive it: what the supervisor must stop.

    python family.py REPORT MODE (exit|wait) [STAMPS]

The agent starts one descendant which, by MODE:

* ``background``: stays in the agent's process group and session;
* ``ignore-term``: the same, and ignores SIGTERM;
* ``setsid``: moves to a session and process group of its own;
* ``double-fork``: the same, through a middle process that exits at once (an orphan);
* ``thread-leader``: moves to a session of its own, and lives on in a second thread after its
  main thread has exited: ``/proc`` then shows it as a zombie (``Z``), though it runs.

Once set up, the descendant writes ``"<agent pid> <descendant pid>\\n"`` to REPORT (a FIFO the
test reads). Then the agent exits 0 (``exit``) or waits to be killed (``wait``); the
descendant waits to be killed. With STAMPS, both append ``"<pid> <time_ns>"`` to that file
every 0.1 s while they live: the simulated work whose timestamps show when it ran.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time


def live(stamps: str | None) -> None:
    while True:
        if stamps is None:
            signal.pause()
        else:
            with open(stamps, "a") as f:
                f.write(f"{os.getpid()} {time.time_ns()}\n")
            time.sleep(0.1)  # the work's pace, not a synchronisation


def main() -> None:
    report, mode, action = sys.argv[1:4]
    stamps = sys.argv[4] if len(sys.argv) > 4 else None
    agent = os.getpid()
    ready_r, ready_w = os.pipe()
    if os.fork() == 0:
        os.close(ready_r)
        if mode == "ignore-term":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if mode in ("setsid", "double-fork", "thread-leader"):
            os.setsid()
        if mode == "double-fork" and os.fork() != 0:
            os._exit(0)  # the middle process: its child is an orphan from now on
        with open(report, "w") as f:
            f.write(f"{agent} {os.getpid()}\n")
        os.close(ready_w)
        if mode == "thread-leader":
            threading.Thread(target=live, args=(stamps,)).start()
            ctypes.CDLL(None).pthread_exit(None)  # the main thread ends; the process runs on
        live(stamps)
    os.close(ready_w)
    os.read(ready_r, 1)  # end of file: the descendant has reported
    if action == "exit":
        sys.exit(0)
    live(stamps)


if __name__ == "__main__":
    main()
