"""Blocks of ports for running tasks (queue_core.ports): distinct, skipping used ports, freed on release."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from queue_core.errors import InvalidArgumentError, PortsExhaustedError
from queue_core.ports import PortBlocks, port_free

from ..conftest import WAIT


def _all_free(port: int) -> bool:
    return True


def test_two_holders_never_share_a_block_and_a_released_block_is_free_again() -> None:
    blocks = PortBlocks(30000, probe=_all_free)
    a = blocks.acquire("t1")
    b = blocks.acquire("t2")
    assert (a.first, b.first) == (30000, 30010)
    assert list(b.ports) == list(range(30010, 30020))
    assert blocks.held() == [a, b]
    blocks.release(a)
    blocks.release(a)  # twice: nothing more
    c = blocks.acquire("t3")
    assert c.first == 30000
    assert c.holder == "t3"
    assert blocks.held() == [c, b]


def test_a_block_with_a_port_in_use_is_skipped() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        used = server.getsockname()[1]  # an ephemeral port: far above 1024
        assert not port_free(used)
        # The real probe for the port in use; the others of the range are not this test's business.
        blocks = PortBlocks(used - 3, probe=lambda port: port_free(port) if port == used else True)
        assert blocks.acquire("t1").first == used + 7
    assert port_free(used)  # closed: free again


def test_blocks_handed_out_at_once_from_many_threads_are_distinct() -> None:
    blocks = PortBlocks(30000, probe=_all_free)
    barrier = threading.Barrier(8)
    got: list[int] = []
    lock = threading.Lock()

    def take(i: int) -> None:
        barrier.wait(WAIT)
        for _ in range(5):
            block = blocks.acquire(f"t{i}")
            with lock:
                got.append(block.first)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert len(got) == 40
    assert len(set(got)) == 40


def test_no_free_block_is_an_error() -> None:
    blocks = PortBlocks(30000, last=30019, probe=lambda port: port != 30015)
    assert blocks.acquire("t1").first == 30000
    with pytest.raises(PortsExhaustedError, match="no block of 10 free ports between 30000 and 30019"):
        blocks.acquire("t2")


@pytest.mark.parametrize(("base", "size", "last"), [(80, 10, 65535), (30000, 0, 65535), (65530, 10, 65535)])
def test_a_range_that_is_not_one_of_user_ports_is_refused(base: int, size: int, last: int) -> None:
    with pytest.raises(InvalidArgumentError):
        PortBlocks(base, size=size, last=last)


def test_across_processes_a_block_held_elsewhere_is_skipped(tmp_path: Path) -> None:
    locks = tmp_path / "ports"
    first = PortBlocks(30000, lock_dir=locks, probe=_all_free)
    second = PortBlocks(30000, lock_dir=locks, probe=_all_free)  # another run, as far as flock goes
    a = first.acquire("t1")
    b = second.acquire("t1")
    assert (a.first, b.first) == (30000, 30010)
    first.release(a)
    assert second.acquire("t2").first == 30000
    assert sorted(os.listdir(locks)) == ["30000.lock", "30010.lock"]
    second.close()
    assert first.acquire("t3").first == 30000


_HOLD = """
import sys
from pathlib import Path
from queue_core.ports import PortBlocks
block = PortBlocks(30000, lock_dir=Path(sys.argv[1]), probe=lambda port: True).acquire("t1")
print(block.first, flush=True)
sys.stdin.read()
"""


def test_a_killed_process_s_block_is_free_at_once(tmp_path: Path) -> None:
    locks = tmp_path / "ports"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(locks)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "30000"
        mine = PortBlocks(30000, lock_dir=locks, probe=_all_free)
        assert mine.acquire("t1").first == 30010
        holder.kill()
        holder.wait(WAIT)
        assert mine.acquire("t2").first == 30000
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.communicate(timeout=WAIT)


def test_a_lock_file_that_is_a_symlink_is_not_followed(tmp_path: Path) -> None:
    locks = tmp_path / "ports"
    locks.mkdir(mode=0o700)
    target = tmp_path / "elsewhere"
    target.write_text("untouched\n")
    os.symlink(target, locks / "30000.lock")
    with pytest.raises(OSError, match="cannot open the port lock"):
        PortBlocks(30000, lock_dir=locks, probe=_all_free).acquire("t1")
    assert target.read_text() == "untouched\n"
