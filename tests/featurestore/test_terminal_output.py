"""What the tools print carries no terminal control sequence from the data: a file name or label stored with ANSI
escapes (clear screen, retitle the window, an 8-bit CSI), a bell, a carriage return or a bidi override comes out
escaped (`\\x1b[2J`) from every verb, in tables, messages and errors; the jobs' log lines too."""
import logging

import pytest

from featurestore.cli import main
from featurestore.terminal_text import TerminalSafeFormatter, escape_control
from featurestore.writer import ShardWriter
from tests.featurestore.store_factory import DIM, shard_tables, write_store

HOSTILE = "img\x1b[2J\x1b]0;owned\x07\rx\u202eevil\x9b31m.jpg"
RAW = ("\x1b", "\x07", "\r", "\u202e", "\x9b")


@pytest.fixture()
def store(tmp_path):
    root = write_store(tmp_path / "store", shards=1)
    tables = shard_tables(1)
    tables["images"]["file_name"] = [HOSTILE] * 3
    tables["failures"]["message"] = [f"{HOSTILE}: unreadable"]
    ShardWriter(root, "extract_features", DIM).commit(1, tables, fingerprint="fp-1")
    return root


@pytest.mark.parametrize("command", [
    ["head", "{store}", "images"], ["sql", "{store}", "SELECT file_name FROM images"], ["inspect", "{store}"],
    ["head", "{store}", "failures"], ["sql", "{store}", "SELECT file_name FROM nowhere_{hostile}"],
])
def test_no_control_character_of_the_data_reaches_the_terminal(store, capsys, command):
    main([part.format(store=store, hostile=HOSTILE) for part in command])
    out, err = capsys.readouterr()
    assert not any(raw in out + err for raw in RAW), (out + err)[:500]
    if command[0] == "head" and command[2] == "images":
        assert "img\\x1b[2J\\x1b]0;owned\\x07\\x0dx" in out  # cut at the cell width


def test_escaping_keeps_our_own_line_breaks():
    assert escape_control("a\nb\tc\x1b") == "a\nb\tc\\x1b"
    assert escape_control("a\nb", keep="") == "a\\x0ab"
    record = logging.LogRecord("job", logging.ERROR, __file__, 1, "cannot read %s", (HOSTILE,), None)
    line = TerminalSafeFormatter("%(message)s").format(record)
    assert not any(raw in line for raw in RAW) and "\\x1b[2J" in line
