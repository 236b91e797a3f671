"""A Ctrl-C at any instant of a write leaves the database usable, by this run and by others."""

from __future__ import annotations

import pytest

from charmcli.store import PhotoRow, Store


class _InterruptAfter:
    """A connection stand-in that raises KeyboardInterrupt right after one statement succeeds."""

    def __init__(self, conn, statement: str) -> None:
        self._conn, self._statement, self.armed = conn, statement, True

    def execute(self, sql, *args):
        cursor = self._conn.execute(sql, *args)
        if self.armed and sql.startswith(self._statement):
            self.armed = False
            raise KeyboardInterrupt
        return cursor

    def __getattr__(self, name):
        return getattr(self._conn, name)


@pytest.mark.parametrize("statement", ["BEGIN IMMEDIATE", "INSERT INTO photos"])
def test_interrupt_inside_a_write_rolls_back_and_releases_the_lock(tmp_path, statement):
    db = tmp_path / "c.db"
    store, other = Store(db), Store(db, timeout=0.5)
    real = store.conn
    store.conn = _InterruptAfter(real, statement)  # type: ignore[assignment]
    row = PhotoRow("/p/a.jpg", 1, 2, "ab" * 32)
    with pytest.raises(KeyboardInterrupt):
        store.write([row])
    store.conn = real
    assert not real.in_transaction  # rolled back: no half transaction, no write lock held
    other.write([PhotoRow("/p/b.jpg", 1, 2, "cd" * 32)])  # another process is not blocked
    store.write([row])  # and this one goes on
    assert sorted(r["path"] for r in store.all("SELECT path FROM photos")) == ["/p/a.jpg", "/p/b.jpg"]
    store.close()
    other.close()


def test_undecodable_path_bytes_round_trip_exactly(tmp_path):
    """Non-UTF-8 names (lone surrogates in Python) are stored and read back unchanged, and a
    name that merely contains the escape character is not confused with one."""
    names = [
        "/p/caf\udce9.jpg",
        "/p/\uffff\U0001dce9.jpg",
        "/p/\uffff.jpg",
        "/p/plain-été.jpg",
        "/p/x\ud800.jpg",
    ]
    with Store(tmp_path / "c.db") as store:
        store.write([PhotoRow(n, 1, 2, f"{i:064x}") for i, n in enumerate(names)])
        assert sorted(r["path"] for r in store.all("SELECT path FROM photos")) == sorted(names)
        for i, n in enumerate(names):
            assert store.photo_by_path(n)["sha256"] == f"{i:064x}"
        assert store.stale_rows(["/p"])[0] == sorted(names)  # and prefix filters still match
