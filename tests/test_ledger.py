"""The ledger: schema and migrations, many writers at once, results.tsv."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from autoorg.errors import LedgerError
from autoorg.experiments import ledger
from autoorg.paths import OrgPaths


@pytest.fixture
def paths(tmp_path: Path) -> OrgPaths:
    p = OrgPaths(tmp_path / "repo" / ".autoorg" / "t")
    p.home.mkdir(parents=True)
    return p


def row(**over: object) -> dict[str, object]:
    base = {"kind": "exp", "agent": "alice", "task": "synthetic", "commit_sha": "a" * 40, "tree": "b" * 40,
            "head": "c" * 40, "seed": 1, "budget": 2.0, "standard": 1, "slot_class": "cpu",
            "description": "lr 0.005"}
    return {**base, **over}


def test_first_open_creates_the_schema_in_wal_mode(paths: OrgPaths) -> None:
    assert ledger.add_experiment(paths, row()) == "e0001"
    assert ledger.add_experiment(paths, row()) == "e0002"
    conn = sqlite3.connect(paths.ledger)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [r[0] for r in conn.execute("SELECT version FROM migrations")] == list(range(1, len(ledger.MIGRATIONS) + 1))
    columns = {r[1] for r in conn.execute("PRAGMA table_info(experiments)")}
    assert {"cpu_s", "gpu_s", "sealed"} <= columns  # what the harness measured of a run (migration 5)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"experiments", "verifications", "promotions", "baselines", "agent_usage", "migrations"} <= tables


def test_a_ledger_of_an_older_autoorg_is_migrated_keeping_its_rows(paths: OrgPaths) -> None:
    conn = sqlite3.connect(paths.ledger, isolation_level=None)  # what autoorg with schema version 1 wrote
    conn.execute("CREATE TABLE migrations (version INTEGER PRIMARY KEY, applied TEXT NOT NULL)")
    for statement in ledger.MIGRATIONS[0].split(";"):
        conn.execute(statement)
    conn.execute("INSERT INTO migrations VALUES (1, 'then')")
    conn.execute("INSERT INTO experiments (exp, kind, agent, task, commit_sha, tree, head, seed, budget, standard, "
                 "slot_class, verdict, queued) VALUES ('e0001', 'exp', 'alice', 'synthetic', 'a', 'b', 'c', 1, 2.0, "
                 "1, 'cpu', 'no gain', 'then')")
    conn.close()
    assert ledger.get_experiment(paths, "e0001")["agent_tokens"] is None
    assert ledger.get_experiment(paths, "e0001")["seed_chosen"] == 0  # an old row: its seed was the runner's
    assert ledger.add_experiment(paths, row(agent_tokens=1234)) == "e0002"
    assert ledger.get_experiment(paths, "e0002")["agent_tokens"] == 1234
    assert ledger.usage_totals(paths) == {}


def test_rows_round_trip_with_metrics_as_json(paths: OrgPaths) -> None:
    exp = ledger.add_experiment(paths, row())
    assert ledger.get_experiment(paths, exp)["verdict"] == "queued"
    ledger.update_experiment(paths, exp, verdict="no gain", metric=1.25,
                             metrics={"final": True, "val_loss": 1.25, "steps": 90})
    got = ledger.get_experiment(paths, exp)
    assert got["metric"] == 1.25 and got["metrics"]["steps"] == 90 and got["standard"] is True
    assert [r["exp"] for r in ledger.experiments(paths, agent="alice")] == [exp]
    assert ledger.experiments(paths, agent="bob") == []


def test_a_late_sweep_never_overwrites_a_result(paths: OrgPaths) -> None:
    exp = ledger.add_experiment(paths, row())
    ledger.update_experiment(paths, exp, verdict="no gain", metric=1.0)
    assert not ledger.claim_unfinished(paths, exp, "crash: runner died")
    assert ledger.get_experiment(paths, exp)["verdict"] == "no gain"


def test_a_ledger_newer_than_the_code_is_refused(paths: OrgPaths) -> None:
    ledger.add_experiment(paths, row())
    conn = sqlite3.connect(paths.ledger)
    conn.execute("INSERT INTO migrations VALUES (99, 'future')")
    conn.commit()
    conn.close()
    with pytest.raises(LedgerError, match="newer than this autoorg"):
        ledger.experiments(paths)


def test_a_corrupt_ledger_is_a_one_line_error(paths: OrgPaths) -> None:
    paths.ledger.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError, match="unreadable|cannot open"):
        ledger.experiments(paths)


WRITER = """
import sys
from pathlib import Path
from autoorg.experiments import ledger
from autoorg.paths import OrgPaths
paths = OrgPaths(Path(sys.argv[1]))
for i in range(int(sys.argv[3])):
    exp = ledger.add_experiment(paths, {"kind": "exp", "agent": sys.argv[2], "task": "t", "commit_sha": "a",
                                        "tree": "b", "head": "c", "seed": i, "budget": 1.0, "standard": 1,
                                        "slot_class": "cpu"})
    ledger.update_experiment(paths, exp, verdict="no gain", metric=float(i))
"""


def test_many_writers_at_once_lose_no_row(paths: OrgPaths) -> None:
    writers, each = 8, 25
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(paths.home), f"w{n}", str(each)])
             for n in range(writers)]
    for p in procs:
        assert p.wait(timeout=120) == 0
    rows = ledger.experiments(paths)
    assert len(rows) == writers * each
    assert len({r["exp"] for r in rows}) == writers * each
    assert all(r["verdict"] == "no gain" for r in rows)
    for n in range(writers):
        assert sorted(r["seed"] for r in rows if r["agent"] == f"w{n}") == list(range(each))


def test_results_tsv_starts_with_autoresearch_columns(paths: OrgPaths) -> None:
    a = ledger.add_experiment(paths, row(description="lr 0.005\tand\nmore"))
    ledger.update_experiment(paths, a, verdict="promoted", metric=0.99791, memory_gb=44.04)
    b = ledger.add_experiment(paths, row())
    ledger.update_experiment(paths, b, verdict="crash: exit 1")
    c = ledger.add_experiment(paths, row())
    ledger.update_experiment(paths, c, verdict="no gain", metric=1.1)
    ledger.write_results_tsv(paths, "val_bpb")
    lines = paths.results_tsv.read_text().splitlines()
    assert lines[0].split("\t")[:6] == ["commit", "val_bpb", "memory_gb", "status", "description", "exp"]
    cells = [ln.split("\t") for ln in lines[1:]]
    assert all(len(c) == len(cells[0]) for c in cells)
    assert cells[0][:5] == ["aaaaaaa", "0.997910", "44.0", "keep", "lr 0.005 and more"]
    assert [c[3] for c in cells] == ["keep", "crash", "discard"]


def test_a_process_keeps_one_connection_yet_sees_every_change_and_a_new_ledger(paths: OrgPaths) -> None:
    """Each thread keeps its connection (opening and closing one per call checkpointed and deleted the WAL each
    time): reads still see other writers at once, a read inside a failed write sees none of it, and an org
    removed and made again at the same path is the new ledger, not the old file the connection had open."""
    first = ledger.add_experiment(paths, row())
    wal = paths.ledger.with_name(paths.ledger.name + "-wal")
    assert wal.exists()  # our connection is still open: the WAL was not checkpointed away
    other = sqlite3.connect(paths.ledger)
    other.execute("UPDATE experiments SET description = 'by another process' WHERE exp = ?", (first,))
    other.commit()
    other.close()
    assert ledger.get_experiment(paths, first)["description"] == "by another process"

    def fail_halfway(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE experiments SET description = 'half done' WHERE exp = ?", (first,))
        assert ledger.get_experiment(paths, first)["description"] == "by another process"  # a fresh connection
        raise LedgerError("stop")

    with pytest.raises(LedgerError, match="stop"):
        ledger._retrying(paths, fail_halfway)
    assert ledger.get_experiment(paths, first)["description"] == "by another process"
    assert ledger.add_experiment(paths, row()) == "e0002"  # not left holding the write lock

    for file in paths.home.glob("ledger.sqlite*"):
        file.unlink()
    assert ledger.experiments(paths) == []
    assert ledger.add_experiment(paths, row()) == "e0001"
