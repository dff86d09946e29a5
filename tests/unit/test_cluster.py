"""The cluster's pieces that need no cluster (issue 16): the address, the missing extra, the
config keys, the log stream's order, what a status record keeps of a worker. The real thing,
with a scheduler and workers, is tests/integration/test_cluster.py."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from cli.config import ConfigError
from cli.config_files import batch_of, repo_config_of
from cli.render import agent_text
from cli.resume import Options
from queue_core import cluster
from queue_core.cluster import Cluster, ClusterAgent, ClusterError, _Stream, check_address
from queue_core.cluster_worker import RemoteAttempt, RemoteOutcome
from queue_core.errors import InvalidArgumentError
from queue_core.records import RunningTask


@pytest.mark.parametrize("address", ["tcp://10.0.0.2:8786", "tls://sched.example:8786", "local:1", "local:12"])
def test_an_address_is_a_scheduler_or_local_workers(address: str) -> None:
    assert check_address(address) == address


@pytest.mark.parametrize(
    "address",
    [
        "local:0",
        "local:",
        "local:x",
        "local:-1",
        "local:²",
        "http://x:1",
        "tcp://",
        "tcp://-x",
        "tcp://a b",
        "sched:8786",
        "",
    ],
)
def test_anything_else_is_refused_saying_what_is_expected(address: str) -> None:
    with pytest.raises(InvalidArgumentError, match=r"expected a Dask scheduler's address, tcp://HOST:PORT"):
        check_address(address)


def test_without_dask_a_cluster_is_refused_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed raises ImportError
    with pytest.raises(ClusterError, match=r"pip install 'project-manager\[dask\]'"):
        Cluster.connect("local:1")


def test_a_scheduler_that_does_not_answer_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("distributed", reason="needs the [dask] extra")
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 0.5)
    with pytest.raises(ClusterError, match=r"cannot connect to the Dask scheduler at tcp://127.0.0.1:1"):
        Cluster.connect("tcp://127.0.0.1:1")


def test_the_repository_config_names_the_cluster() -> None:
    assert repo_config_of("cluster: tcp://sched:8786\n", "project-manager.yaml").cluster == "tcp://sched:8786"
    assert repo_config_of("cluster: null\n", "project-manager.yaml").cluster is None


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("cluster: 5\n", "got '5'"),
        ("cluster: local:0\n", "local:N"),
        ("\ncluster: [tcp://a:1]\n", "expected a string"),
    ],
)
def test_a_bad_cluster_key_names_the_file_line_and_field(text: str, said: str) -> None:
    with pytest.raises(ConfigError) as caught:
        repo_config_of(text, "project-manager.yaml")
    line = text[: text.index("cluster")].count("\n") + 1
    assert str(caught.value).startswith(f"project-manager.yaml:{line}: cluster:")
    assert said in str(caught.value)


def test_an_agents_resources_are_whole_units_by_name() -> None:
    batch = batch_of(
        "agents:\n  dev: {preset: shell, resources: {claude: 1, gpu: 2}}\n"
        "tasks:\n  - {id: a, agent: dev, description: x}\n",
        "b.yaml",
    )
    assert batch.agents["dev"].resources == (("claude", 1), ("gpu", 2))


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("{gpu: 0}", "at least 1"),
        ("[gpu]", "expected a mapping of resource names to units, {claude: 1}"),
        ("{gpu: 1.5}", "integer"),
        ("{'a b': 1}", "a resource name is"),
    ],
)
def test_bad_resources_are_refused_naming_the_agent(value: str, said: str) -> None:
    with pytest.raises(ConfigError, match=r"b\.yaml:2: agents\.dev\.resources") as caught:
        batch_of(f"agents:\n  dev: {{preset: shell, resources: {value}}}\ntasks: []\n", "b.yaml")
    assert said in str(caught.value)


def test_a_run_resumed_keeps_its_cluster_unless_given_another() -> None:
    recorded = Options.from_json(Options(cluster="tcp://a:1").to_json())
    assert recorded.cluster == "tcp://a:1"
    assert Options().over(recorded).cluster == "tcp://a:1"
    assert Options(cluster="local:2").over(recorded).cluster == "local:2"
    assert Options.from_json({"max_parallel": None}).cluster is None  # a journal older than --cluster
    with pytest.raises(ValueError, match="local:N"):
        Options.from_json({"cluster": "local:0"})


def test_the_log_streams_in_order_and_its_end_completes_it_once(tmp_path: Path) -> None:
    log = tmp_path / "t1.log"
    log.write_bytes(b"[project-manager] earlier attempt\n")
    stream = _Stream(log)
    stream.take({"token": "x", "worker": "tcp://10.0.0.2:1", "host": "h"})
    stream.take({"token": "x", "offset": 0, "data": b"one\n"})
    stream.take({"token": "x", "offset": 8, "data": b"three\n"})  # ahead of what came: left to the end
    stream.take({"token": "x", "offset": 0, "data": b"one\n"})  # again: taken once
    stream.take({"token": "x", "offset": 4, "data": b"two\n"})
    assert log.read_bytes() == b"[project-manager] earlier attempt\none\ntwo\n"
    stream.finish(b"one\ntwo\nthree\nfour\n")
    stream.take({"token": "x", "offset": 8, "data": b"three\n"})  # late: the end said it all
    assert log.read_bytes() == b"[project-manager] earlier attempt\none\ntwo\nthree\nfour\n"
    assert stream.worker == "tcp://10.0.0.2:1"


def test_a_status_record_keeps_a_running_tasks_worker_and_shows_it() -> None:
    task = RunningTask("t1", "claude", worker="tcp://10.0.0.2:40123")
    assert RunningTask.from_json(task.to_json()) == task
    assert "worker" not in RunningTask("t1", "claude").to_json()  # a local task's record is as it was
    assert agent_text(task) == "claude on 10.0.0.2:40123"
    assert agent_text(RunningTask("t1", "claude")) == "claude"


class _RacyFuture:
    """A Dask future that is done, but whose ``result(timeout=...)`` fails as distributed's does
    (2026.8) when its timeout meets the answer: ``sync`` then returns a local it never set."""

    key = "pm-r-t1-x"
    status = "finished"

    def __init__(self, outcome: object) -> None:
        self.outcome = outcome

    def result(self, timeout: float | None = None) -> object:
        if timeout is not None:
            raise UnboundLocalError("cannot access local variable 'result' where it is not associated with a value")
        return self.outcome

    def add_done_callback(self, fn: Callable[[_RacyFuture], None]) -> None:
        fn(self)

    def release(self) -> None:
        pass


class _Client:
    def __init__(self, future: _RacyFuture) -> None:
        self.future = future

    def submit(self, *args: object, **kwargs: object) -> _RacyFuture:
        return self.future

    def sync(self, *args: object, **kwargs: object) -> None:
        raise OSError("no scheduler here")

    @property
    def scheduler(self) -> object:
        return self


def test_an_attempts_outcome_is_taken_whatever_the_timed_wait_of_dask_does(tmp_path: Path) -> None:
    """Before: the wait was future.result(timeout=0.5), which in distributed 2026.8 raises
    UnboundLocalError when its timeout meets the answer: one attempt in a few hundred failed
    ("its worker failed to run it"), found by bench/cluster.py."""
    pytest.importorskip("distributed", reason="needs the [dask] extra")
    outcome = RemoteOutcome("tcp://10.0.0.2:1", "h", "/w/t", code=0)
    agent = ClusterAgent(["true"], tmp_path, tmp_path / "t1.log")
    attempt = RemoteAttempt(
        "tok", "rid", "r", "t1", "d", "pm/r/t1", "0" * 40, (), ("true",), (), (), b"", 1.0, None, "x"
    )
    fake = Cluster(_Client(_RacyFuture(outcome)), "tcp://10.0.0.2:8786")
    assert agent._run_remote(fake, attempt, _Stream(tmp_path / "t1.log", "pm-r-t1-x"), []) is outcome
