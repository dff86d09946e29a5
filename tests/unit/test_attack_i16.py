"""Hostile input to issue 16's cluster mode, without a cluster: a scheduler's address that accepts
and says nothing, schemes Dask cannot use here, a count of local workers that would start
thousands of processes. The cluster itself is attacked in tests/integration/test_attack_i16.py."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path

import pytest

from queue_core import cluster
from queue_core.changes import GitCalls
from queue_core.cluster import LOCAL_MAX, Cluster, ClusterError, check_address, make_bundle
from queue_core.errors import InvalidArgumentError

from ..conftest import git, git_repo

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


class _Watching(GitCalls):
    """Git calls that note the refs/pm-transfer refs of ``repo`` while a bundle is being made."""

    def __init__(self, repo: Path) -> None:
        super().__init__()
        self.repo = repo
        self.seen: list[str] = []

    def run(self, repo: Path, *args: str, input: bytes | None = None, env: Mapping[str, str] | None = None,
            ok: Collection[int] = (0,)) -> tuple[int, bytes]:  # fmt: skip
        if "bundle" in args:
            self.seen.append(git(self.repo, "for-each-ref", "refs/pm-transfer/"))
        return super().run(repo, *args, input=input, env=env, ok=ok)


def test_a_bundle_is_made_without_a_ref_in_the_users_repository(tmp_path: Path) -> None:
    """Before: the base's bundle named a ref made for the while in the user's repository: a run
    killed (SIGKILL) while it was made (2.3 s on a 20,000-file repository) left
    refs/pm-transfer/<uuid> there for good, in git log --all and a git push --mirror."""
    repo = git_repo(tmp_path / "repo", {"a.txt": "a\n"})
    first = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "commit", "-q", "--allow-empty", "-m", "second")
    second = git(repo, "rev-parse", "HEAD").strip()
    watching = _Watching(repo)
    whole, since = make_bundle(repo, first, None, watching), make_bundle(repo, second, first, watching)
    assert watching.seen == ["", ""]
    assert git(repo, "for-each-ref", "refs/pm-transfer/") == ""
    clone = tmp_path / "clone.git"
    git(tmp_path, "init", "-q", "--bare", str(clone))
    for data in (whole, since):  # what a worker does with them: both fetched, in order
        bundle = tmp_path / "b.bundle"
        bundle.write_bytes(data)
        subprocess.run(["git", "fetch", "-q", str(bundle), "+refs/*:refs/got/*"], cwd=clone, check=True)
    assert git(clone, "rev-parse", "--verify", f"{second}^{{commit}}").strip() == second
