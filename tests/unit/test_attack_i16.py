"""Hostile input to issue 16's cluster mode, without a cluster: a scheduler's address that accepts
and says nothing, schemes Dask cannot use here, a count of local workers that would start
thousands of processes. The cluster itself is attacked in tests/integration/test_attack_i16.py."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from queue_core import cluster
from queue_core.cluster import LOCAL_MAX, Cluster, ClusterError, check_address
from queue_core.errors import InvalidArgumentError

pytest.importorskip("distributed", reason="needs the [dask] extra")


@pytest.fixture
def silent() -> Iterator[str]:
    """The address of a socket that accepts connections (the kernel does) and never says a word."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield f"tcp://127.0.0.1:{server.getsockname()[1]}"


def test_a_scheduler_that_accepts_and_says_nothing_is_given_up_in_time(
    silent: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: Dask's handshake waited for ever (its timeout covers the connection only), and the
    run with it: not even SIGTERM ended it, only the peer's closing."""
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 0.5)
    started = time.monotonic()
    with pytest.raises(ClusterError, match=f"cannot connect to the Dask scheduler at {silent}"):
        Cluster.connect(silent)
    assert time.monotonic() - started < 5.0


@pytest.mark.parametrize("address", ["tls://127.0.0.1:1", "ucx://127.0.0.1:1"])
def test_a_scheme_dask_cannot_use_here_is_a_clear_error(address: str) -> None:
    """Before: a TypeError's traceback, exit 1 (tls:// with no certificates in Dask's
    configuration; ucx:// without ucx installed)."""
    with pytest.raises(ClusterError, match="cannot connect to the Dask scheduler"):
        Cluster.connect(address)


def test_local_workers_are_counted_within_reason() -> None:
    """Before: local:99999 started 99,999 worker processes."""
    assert check_address(f"local:{LOCAL_MAX}") == f"local:{LOCAL_MAX}"
    for count in (LOCAL_MAX + 1, 99999):
        with pytest.raises(InvalidArgumentError, match=f"1 to {LOCAL_MAX} local workers"):
            check_address(f"local:{count}")
