"""The tail of a task's log as reports show it (cli/logtail.py): the last lines, read from the end
only, whatever the log holds or is."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from cli import logtail
from cli.logtail import Tail, clean, read_tail


def test_a_short_log_is_shown_whole(tmp_path: Path) -> None:
    log = tmp_path / "t1.log"
    log.write_bytes(b"$ sh -c 'echo hi'\nhi\n")
    assert read_tail(log) == Tail("$ sh -c 'echo hi'\nhi", 0)


def test_a_long_log_shows_its_last_lines_and_how_many_bytes_came_before(tmp_path: Path) -> None:
    log = tmp_path / "t1.log"
    lines = [f"line {n}" for n in range(1000)]
    log.write_text("\n".join(lines) + "\n")
    tail = read_tail(log, lines=200)
    assert tail is not None
    assert tail.text.splitlines() == lines[-200:]
    assert tail.omitted == len("\n".join(lines[:-200])) + 1
    assert log.read_bytes()[tail.omitted :].decode() == tail.text + "\n"


def test_a_log_without_a_last_line_end_keeps_its_last_line(tmp_path: Path) -> None:
    log = tmp_path / "t1.log"
    log.write_text("a\nb\nc")
    assert read_tail(log, lines=2) == Tail("b\nc", 2)


def _counting_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Patch os.pread to count the bytes asked for; the list of the sizes."""
    sizes: list[int] = []
    pread: Callable[[int, int, int], bytes] = os.pread

    def counted(fd: int, size: int, offset: int) -> bytes:
        sizes.append(size)
        return pread(fd, size, offset)

    monkeypatch.setattr(logtail.os, "pread", counted)
    return sizes


def test_a_50_mb_log_is_read_from_its_end_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "t1.log"
    with log.open("wb") as f:
        f.truncate(50 * 1024 * 1024)  # sparse: 50 MB of NUL, no line end
        f.seek(0, os.SEEK_END)
        f.write(b"".join(b"line %d\n" % n for n in range(300)))
    sizes = _counting_reads(monkeypatch)
    tail = read_tail(log)
    assert tail is not None
    assert tail.text.splitlines() == [f"line {n}" for n in range(100, 300)]
    assert tail.omitted == log.stat().st_size - len(b"".join(b"line %d\n" % n for n in range(100, 300)))
    assert sum(sizes) <= logtail.TAIL_BYTES


def test_one_line_of_50_mb_keeps_its_end_within_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "t1.log"
    with log.open("wb") as f:
        f.truncate(50 * 1024 * 1024)
        f.seek(0, os.SEEK_END)
        f.write(b"the end\n")
    sizes = _counting_reads(monkeypatch)
    tail = read_tail(log)
    assert tail is not None
    assert sum(sizes) == logtail.TAIL_BYTES
    assert tail.text == "the end"  # the NULs left out: XML cannot hold them
    assert tail.omitted == log.stat().st_size - logtail.TAIL_BYTES


def test_what_xml_cannot_hold_is_left_out_and_bytes_not_utf8_show_as_replacement(tmp_path: Path) -> None:
    log = tmp_path / "t1.log"
    log.write_bytes(b"ok \x00\x01\x07\x1b[31mred\x1b[0m\ttab\n\xff\xfe bad \xc3\n\xef\xbf\xbe\xef\xbf\xbf end\n")
    tail = read_tail(log)
    assert tail == Tail("ok [31mred[0m\ttab\n\ufffd\ufffd bad \ufffd\n end", 0)


def test_a_progress_bar_redrawn_with_carriage_returns_shows_as_a_terminal_left_it(tmp_path: Path) -> None:
    log = tmp_path / "t1.log"
    log.write_bytes(b"10%\r50%\r100%\ndone\r\n")
    assert read_tail(log) == Tail("100%\ndone", 0)


def test_clean_leaves_out_lone_surrogates_and_keeps_every_other_character() -> None:
    text = "id\udcff-\ud800x \U0001f600 é ]]> <&"
    assert clean(text) == "id-x \U0001f600 é ]]> <&"


def test_no_log_is_none(tmp_path: Path) -> None:
    assert read_tail(None) is None
    assert read_tail(tmp_path / "missing.log") is None
    assert read_tail(tmp_path) is None  # a directory


def test_a_fifo_is_never_waited_on_and_a_symlink_never_followed(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.log"
    os.mkfifo(fifo)
    assert read_tail(fifo) is None  # a writer could hold it open for good
    secret = tmp_path / "secret"
    secret.write_text("not the log\n")
    (tmp_path / "link.log").symlink_to(secret)
    assert read_tail(tmp_path / "link.log") is None


def test_a_socket_is_no_log(tmp_path: Path) -> None:
    path = tmp_path / "s.log"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        assert read_tail(path) is None


def test_an_empty_log_is_an_empty_tail(tmp_path: Path) -> None:
    (tmp_path / "t1.log").write_bytes(b"")
    assert read_tail(tmp_path / "t1.log") == Tail("", 0)
