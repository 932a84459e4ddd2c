"""The experiment ledger: SQLite (WAL) at `<home>/ledger.sqlite`, and its plain view `results.tsv`.

Many processes write at once (every agent's runner, the gate's jobs): each call opens its own connection, writes
in a short `BEGIN IMMEDIATE` transaction, waits on a busy ledger (busy_timeout) and retries past that, so no row is
ever lost to a lock. The schema is versioned in `migrations`; a newer ledger than this code knows is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from autoorg.clock import now_iso
from autoorg.errors import LedgerError
from autoorg.paths import OrgPaths, atomic_write_text

T = TypeVar("T")
BUSY_TIMEOUT_MS = 10_000
RETRY_FOR_S = 120.0

# Verdicts of an experiment row. `queued`/`running` while it has not finished; `crash: <why>` when it failed;
# `void: <why>` when its protected files were not the org's (it has no metric).
UNFINISHED = ("queued", "running")
ORG_STOPPED = "cancelled: the org was stopped"  # what `down` gives every run it stops
# A run that measured cleanly at the task's budget: the only runs the noise and the head's mean are made of.
MEASURED = ("metric IS NOT NULL AND standard = 1 AND verdict NOT LIKE 'crash%' AND verdict NOT LIKE 'over budget%' "
            "AND verdict NOT LIKE 'void%' "
            "AND verdict NOT IN ('queued', 'running')")
# kind: `exp` (an agent's experiment), `baseline` (the program head re-run for the noise), `verify` (a gate re-run)
KINDS = ("exp", "baseline", "verify")
REVIEW_DECISIONS = ("approve", "refuse")

MIGRATIONS: list[str] = [
    """
    CREATE TABLE experiments (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        exp TEXT UNIQUE,                 -- e0001, e0002, ...: also the folder runs/<exp>/
        kind TEXT NOT NULL,              -- exp | baseline | verify
        agent TEXT NOT NULL,             -- who asked (gate for baseline and verify runs)
        task TEXT NOT NULL,
        commit_sha TEXT NOT NULL,        -- what ran
        tree TEXT NOT NULL,              -- its tree: equal trees run equal code
        parent TEXT,                     -- commit_sha's parent
        head TEXT NOT NULL,              -- the program head when the run was asked for
        diff_stat TEXT NOT NULL DEFAULT '',
        description TEXT NOT NULL DEFAULT '',
        seed INTEGER NOT NULL,
        budget REAL NOT NULL,            -- seconds this run was given
        standard INTEGER NOT NULL,       -- 1 when budget is the task's: only those are compared
        slot_class TEXT NOT NULL,        -- cpu | gpu
        slot TEXT,                       -- the slot it ran on (cpu0, gpu3, gpu0+1)
        org_code TEXT NOT NULL DEFAULT '',  -- orgcode hash: the resolved prompts, skills and org.yaml
        candidate TEXT,                  -- verify runs: the experiment they verify
        verdict TEXT NOT NULL,
        ref_head TEXT,                   -- the program head this run was screened against
        ref_mean REAL, ref_n INTEGER,    -- that head's mean and its number of runs
        delta REAL,                      -- metric - ref_mean
        band REAL, sigma REAL,           -- the noise band it had to beat and the pooled noise
        metric REAL,                     -- the task's metric from the final line
        metrics TEXT,                    -- every final metric, JSON
        wall_s REAL, train_s REAL, memory_gb REAL, exit_code INTEGER,
        pid INTEGER,                     -- the runner process while unfinished
        pid_start TEXT,                  -- its start time (/proc/<pid>/stat), to tell a reused pid
        queued TEXT NOT NULL, started TEXT, finished TEXT
    );
    CREATE INDEX experiments_tree ON experiments(tree, slot_class);
    CREATE INDEX experiments_verdict ON experiments(verdict);
    CREATE TABLE verifications (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        exp TEXT NOT NULL,               -- the candidate
        head TEXT NOT NULL,              -- the program head it was squashed onto
        commit_sha TEXT,                 -- the squashed commit (None when stale)
        runs TEXT NOT NULL DEFAULT '[]', -- JSON list of verify experiment ids
        status TEXT NOT NULL,            -- running | paused | promoting | promoted | rejected | stale | superseded
        why TEXT NOT NULL DEFAULT '',
        mean REAL, head_mean REAL, band REAL, sigma REAL,
        started TEXT NOT NULL, finished TEXT
    );
    CREATE TABLE promotions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        exp TEXT NOT NULL, agent TEXT NOT NULL,
        old_head TEXT NOT NULL, new_head TEXT NOT NULL,
        metric REAL, head_mean REAL, delta REAL, band REAL,
        description TEXT NOT NULL DEFAULT '',
        ts TEXT NOT NULL
    );
    CREATE TABLE baselines (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        task TEXT NOT NULL, slot_class TEXT NOT NULL, head TEXT NOT NULL,
        n INTEGER NOT NULL, mean REAL NOT NULL, sigma REAL, dof INTEGER NOT NULL,
        ts TEXT NOT NULL
    );
    """,
    """
    CREATE TABLE agent_usage (
        agent TEXT NOT NULL,
        session TEXT NOT NULL,           -- claude:<session id>, codex:<rollout>, anthropic:<start>-<pid>, ...
        backend TEXT NOT NULL,
        model TEXT NOT NULL DEFAULT '',
        input_tokens INTEGER NOT NULL DEFAULT 0,         -- fresh input
        cached_input_tokens INTEGER NOT NULL DEFAULT 0,  -- input read from the prompt cache
        cache_write_tokens INTEGER NOT NULL DEFAULT 0,   -- input written to it
        output_tokens INTEGER NOT NULL DEFAULT 0,
        requests INTEGER NOT NULL DEFAULT 0,
        cost_usd REAL,                   -- NULL when the model's price is unknown
        updated TEXT NOT NULL,
        PRIMARY KEY (agent, session)
    );
    -- the agent's tokens (all its sessions) and their cost when it asked for the experiment. No comment may
    -- follow a column added here: SQLite appends the column's text to the table's stored CREATE statement
    ALTER TABLE experiments ADD COLUMN agent_tokens INTEGER;
    ALTER TABLE experiments ADD COLUMN agent_cost_usd REAL
    """,
    """
    CREATE TABLE branch_reverts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        branch TEXT NOT NULL,            -- the program branch
        found TEXT NOT NULL,             -- where something other than the gate had moved it
        restored TEXT NOT NULL,          -- the last head the gate made, where it was put back
        ts TEXT NOT NULL
    )
    """,
    """
    -- 1 when the agent chose the seed (`exp run --seed`): such a run never counts towards a head's mean
    ALTER TABLE experiments ADD COLUMN seed_chosen INTEGER NOT NULL DEFAULT 0
    """,
    """
    -- what the harness measured of a run (sandbox.py): CPU seconds of its whole process tree, GPU seconds where
    -- known (else NULL), and how it was sealed (namespaces | subreaper). No comment may follow a column here
    ALTER TABLE experiments ADD COLUMN cpu_s REAL;
    ALTER TABLE experiments ADD COLUMN gpu_s REAL;
    ALTER TABLE experiments ADD COLUMN sealed TEXT
    """,
    """
    -- the gate's runs scored on the task's held-out split (agents' runs never are), and each promotion's
    -- held-out comparison: the new head's re-runs against the old head's baselines, and whether it got worse
    ALTER TABLE experiments ADD COLUMN heldout REAL;
    ALTER TABLE promotions ADD COLUMN heldout_mean REAL;
    ALTER TABLE promotions ADD COLUMN heldout_head_mean REAL;
    ALTER TABLE promotions ADD COLUMN heldout_delta REAL;
    ALTER TABLE promotions ADD COLUMN heldout_band REAL;
    ALTER TABLE promotions ADD COLUMN heldout_worse INTEGER
    """,
    """
    CREATE TABLE reviews (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        exp TEXT NOT NULL,               -- the candidate reviewed
        reviewer TEXT NOT NULL,          -- an agent of the review role, or human
        decision TEXT NOT NULL,          -- approve | refuse
        reason TEXT NOT NULL DEFAULT '', -- why (a refusal always says why, e.g. asks for an ablation)
        ts TEXT NOT NULL
    )
    """,
    # where a run ran: `local`, or `ray` with the node's id and address and the GPU ids Ray gave it
    """
    ALTER TABLE experiments ADD COLUMN executor TEXT;
    ALTER TABLE experiments ADD COLUMN node TEXT;
    ALTER TABLE experiments ADD COLUMN node_ip TEXT;
    ALTER TABLE experiments ADD COLUMN gpu_ids TEXT
    """,
    # islands: the branch each verification and promotion is on (NULL: the program branch), and the gate's
    # moves of branches between islands. No comment may follow a column added here
    """
    ALTER TABLE verifications ADD COLUMN branch TEXT;
    ALTER TABLE promotions ADD COLUMN branch TEXT;
    CREATE TABLE island_migrations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        branch TEXT NOT NULL,            -- the branch the gate moved: the worst island's, or the program branch
        old_head TEXT NOT NULL, new_head TEXT NOT NULL,
        from_island TEXT NOT NULL,       -- the island whose head it now is
        to_island TEXT,                  -- the island that received it (NULL: the program branch)
        slot_class TEXT NOT NULL,
        from_mean REAL, from_n INTEGER,  -- the migrant head's mean and runs
        old_mean REAL, old_n INTEGER,    -- the replaced head's
        ts TEXT NOT NULL
    )
    """,
]


# ---------------------------------------------------------------------------------------------------------------
# Connections


_batch = threading.local()  # (ledger path, connection) while a `batch` is open on this thread


@contextmanager
def batch(paths: OrgPaths) -> Iterator[None]:
    """Every ledger call of this thread for this org in one connection and one transaction, committed when the
    block ends (rolled back if it raises). For a single writer that writes tens of thousands of rows (the bench's
    simulated orgs); the org's own processes never hold it."""
    with _connect(paths) as conn:
        conn.execute("BEGIN IMMEDIATE")
        _batch.open = (paths.ledger, conn)
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")
        finally:
            _batch.open = None


def _in_batch(paths: OrgPaths) -> sqlite3.Connection | None:
    open_ = getattr(_batch, "open", None)
    return open_[1] if open_ is not None and open_[0] == paths.ledger else None


def _retrying(paths: OrgPaths, action: Callable[[sqlite3.Connection], T]) -> T:
    """Run action in one write transaction, retrying while another writer holds the ledger."""
    conn = _in_batch(paths)
    if conn is not None:
        return action(conn)
    deadline = time.monotonic() + RETRY_FOR_S
    delay = 0.02
    while True:
        try:
            with _connect(paths) as conn:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = action(conn)
                    conn.execute("COMMIT")
                    return result
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        except sqlite3.OperationalError as exc:
            if not _busy(exc):
                raise LedgerError(f"ledger {paths.ledger}: {exc}") from None
            if time.monotonic() > deadline:
                raise LedgerError(f"ledger {paths.ledger} stayed locked for {RETRY_FOR_S:.0f}s; "
                                  "is a process stuck holding it?") from None
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


_kept = threading.local()  # ledger path -> (connection, (st_dev, st_ino) of the file it opened, pid)


@contextmanager
def _connect(paths: OrgPaths) -> Iterator[sqlite3.Connection]:
    """This thread's connection to the org's ledger, kept open between calls: opening one costs a WAL recovery
    look and, when it was the last one open anywhere, closing it checkpoints and deletes `-wal` and `-shm` (a third
    of an offline agent's CPU went there). A fresh one, closed after, when the kept one is inside a transaction
    (a call made from within a write) or the file was replaced (an org removed and made again at the same path)."""
    if not paths.home.is_dir():
        raise LedgerError(f"no org at {paths.home}")
    kept = _kept_connection(paths)
    conn = kept if kept is not None and not kept.in_transaction else _open(paths)
    if kept is None:
        _keep(paths, conn)
    try:
        if conn is kept:
            _migrate(conn)  # one read: a newer autoorg may have moved the schema on since it was opened
        yield conn
    except BaseException as exc:
        if conn.in_transaction:  # whatever was half done is undone, as closing a connection did
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        if not isinstance(exc, sqlite3.DatabaseError):
            raise
        if not _busy(exc):
            _drop_kept(paths)
            raise LedgerError(f"ledger {paths.ledger} is unreadable: {exc}") from None
        raise
    finally:
        if conn is not kept and kept is not None:
            conn.close()


def _busy(exc: sqlite3.DatabaseError) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


def _open(paths: OrgPaths) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(paths.ledger, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot open the ledger {paths.ledger}: {exc}") from None
    conn.row_factory = sqlite3.Row
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        _migrate(conn)
    except BaseException as exc:
        conn.close()
        if isinstance(exc, sqlite3.DatabaseError) and not _busy(exc):
            raise LedgerError(f"ledger {paths.ledger} is unreadable: {exc}") from None
        raise
    return conn


def _kept_connection(paths: OrgPaths) -> sqlite3.Connection | None:
    """The kept connection while it still reads the file now at paths.ledger (in this process)."""
    key = str(paths.ledger)
    entry = getattr(_kept, "conns", {}).get(key)
    if entry is None:
        return None
    conn, ident, pid = entry
    try:
        st = paths.ledger.stat()
        same = (st.st_dev, st.st_ino) == ident and pid == os.getpid()
    except OSError:
        same = False
    if same:
        return conn
    _drop_kept(paths)
    return None


def _keep(paths: OrgPaths, conn: sqlite3.Connection) -> None:
    st = paths.ledger.stat()
    conns = _kept.__dict__.setdefault("conns", {})
    conns[str(paths.ledger)] = (conn, (st.st_dev, st.st_ino), os.getpid())


def _drop_kept(paths: OrgPaths) -> None:
    entry = getattr(_kept, "conns", {}).pop(str(paths.ledger), None)
    if entry is not None and entry[2] == os.getpid():
        with contextlib.suppress(sqlite3.Error):
            entry[0].close()


def _schema_version(conn: sqlite3.Connection) -> int:
    try:
        return int(conn.execute("SELECT COALESCE(MAX(version), 0) FROM migrations").fetchone()[0])
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
        return 0


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema up to date; a plain read when it already is (every connection passes here)."""
    done = _schema_version(conn)
    if done > len(MIGRATIONS):
        raise LedgerError(f"the ledger is at schema version {done}, newer than this autoorg knows "
                          f"({len(MIGRATIONS)}); upgrade autoorg")
    if done == len(MIGRATIONS):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS migrations (version INTEGER PRIMARY KEY, applied TEXT NOT NULL)")
        done = _schema_version(conn)
        for version in range(done + 1, len(MIGRATIONS) + 1):
            # one statement at a time: executescript() would commit the open transaction first
            for statement in MIGRATIONS[version - 1].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT INTO migrations VALUES (?, ?)", (version, now_iso()))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def change_stamp(paths: OrgPaths) -> tuple[int, ...]:
    """A value that changes whenever the ledger does (a commit lands in the WAL file, a checkpoint in the main
    file): a reader that keeps rows between looks reads again only when it differs. () without a ledger."""
    stamp: list[int] = []
    for path in (paths.ledger, paths.ledger.with_name(paths.ledger.name + "-wal")):
        try:
            st = path.stat()
        except FileNotFoundError:
            stamp += [0, 0]
            continue
        stamp += [st.st_mtime_ns, st.st_size]
    return tuple(stamp) if stamp[0] else ()


def _read(paths: OrgPaths, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    conn = _in_batch(paths)
    if conn is not None:
        return [dict(r) for r in conn.execute(sql, args).fetchall()]
    deadline = time.monotonic() + RETRY_FOR_S
    while True:
        try:
            with _connect(paths) as conn:
                return [dict(r) for r in conn.execute(sql, args).fetchall()]
        except sqlite3.OperationalError as exc:
            if time.monotonic() > deadline:
                raise LedgerError(f"ledger {paths.ledger}: {exc}") from None
            time.sleep(0.05)


# ---------------------------------------------------------------------------------------------------------------
# Experiments


def add_experiment(paths: OrgPaths, row: dict[str, Any]) -> str:
    """Insert a queued experiment; returns its id (`e0001`, ...). row holds the columns known at queue time."""
    fields = {"verdict": "queued", "queued": now_iso(), **row}

    def insert(conn: sqlite3.Connection) -> str:
        cols = ", ".join(fields)
        marks = ", ".join("?" for _ in fields)
        cur = conn.execute(f"INSERT INTO experiments ({cols}) VALUES ({marks})", tuple(fields.values()))
        exp_id = f"e{cur.lastrowid:04d}"
        conn.execute("UPDATE experiments SET exp = ? WHERE id = ?", (exp_id, cur.lastrowid))
        return exp_id

    return _retrying(paths, insert)


def update_experiment(paths: OrgPaths, exp: str, **fields: Any) -> None:
    if "metrics" in fields and not isinstance(fields["metrics"], str | None):
        fields["metrics"] = json.dumps(fields["metrics"], sort_keys=True)
    sets = ", ".join(f"{k} = ?" for k in fields)
    _retrying(paths, lambda c: c.execute(f"UPDATE experiments SET {sets} WHERE exp = ?", (*fields.values(), exp)))


def replace_verdict(paths: OrgPaths, exp: str, expected: str, verdict: str) -> bool:
    """Set a verdict only while the experiment's verdict is still `expected`; returns whether it was set."""
    return _retrying(paths, lambda c: c.execute("UPDATE experiments SET verdict = ? WHERE exp = ? AND verdict = ?",
                                                (verdict, exp, expected)).rowcount == 1)


def claim_unfinished(paths: OrgPaths, exp: str, verdict: str, **fields: Any) -> bool:
    """Set a verdict only while the experiment is still queued or running (so a late sweep never overwrites a
    result, and a run never overwrites its cancellation). Returns whether it was set."""
    return exp in claim_many(paths, [exp], verdict, **fields)


def claim_many(paths: OrgPaths, exps: list[str], verdict: str, **fields: Any) -> list[str]:
    """claim_unfinished for several experiments in one transaction; returns those that were set."""
    if "metrics" in fields and not isinstance(fields["metrics"], str | None):
        fields["metrics"] = json.dumps(fields["metrics"], sort_keys=True)
    sets = ", ".join(f"{k} = ?" for k in ("verdict", *fields))

    def update(conn: sqlite3.Connection) -> list[str]:
        done = []
        for exp in exps:
            cur = conn.execute(f"UPDATE experiments SET {sets} WHERE exp = ? AND verdict IN ('queued', 'running')",
                               (verdict, *fields.values(), exp))
            if cur.rowcount == 1:
                done.append(exp)
        return done

    return _retrying(paths, update)


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    row["metrics"] = json.loads(row["metrics"]) if row.get("metrics") else {}
    row["standard"] = bool(row["standard"])
    return row


def get_experiment(paths: OrgPaths, exp: str) -> dict[str, Any]:
    rows = _read(paths, "SELECT * FROM experiments WHERE exp = ?", (exp,))
    if not rows:
        raise LedgerError(f"no experiment '{exp}' in the ledger of org '{paths.tag}'")
    return _decode(rows[0])


def experiments(paths: OrgPaths, *, agent: str | None = None, kinds: tuple[str, ...] = KINDS,
                verdict: str | None = None) -> list[dict[str, Any]]:
    """Experiment rows, oldest first, decoded (metrics as a dict)."""
    sql = f"SELECT * FROM experiments WHERE kind IN ({', '.join('?' for _ in kinds)})"
    args: list[Any] = list(kinds)
    if agent:
        sql += " AND agent = ?"
        args.append(agent)
    if verdict:
        sql += " AND verdict = ?"
        args.append(verdict)
    return [_decode(r) for r in _read(paths, sql + " ORDER BY id", tuple(args))]


def exp_outcomes(paths: OrgPaths) -> list[dict[str, Any]]:
    """Agents' experiments (kind exp), oldest first, only who asked, the verdict and when it finished: what the
    stop rules count."""
    return _read(paths, "SELECT agent, verdict, finished FROM experiments WHERE kind = 'exp' ORDER BY id")


def runs_of_tree(paths: OrgPaths, tree: str, slot_class: str, kinds: tuple[str, ...]) -> list[dict[str, Any]]:
    """Finished, measured, standard-budget runs of a tree on a slot class."""
    marks = ", ".join("?" for _ in kinds)
    rows = _read(paths, f"SELECT * FROM experiments WHERE tree = ? AND slot_class = ? AND kind IN ({marks}) "
                        f"AND {MEASURED} ORDER BY id", (tree, slot_class, *kinds))
    return [_decode(r) for r in rows]


def replicate_groups(paths: OrgPaths, slot_class: str) -> list[list[float]]:
    """Metric values of every tree run more than once on a slot class (standard budget, distinct seeds):
    the groups the noise σ is pooled from."""
    rows = _read(paths, f"SELECT tree, seed, metric FROM experiments WHERE slot_class = ? AND {MEASURED} "
                        "ORDER BY id", (slot_class,))
    groups: dict[str, dict[int, float]] = {}
    for r in rows:
        groups.setdefault(r["tree"], {}).setdefault(r["seed"], r["metric"])
    return [list(g.values()) for g in groups.values() if len(g) > 1]


# ---------------------------------------------------------------------------------------------------------------
# Verifications, promotions, baselines


def add_verification(paths: OrgPaths, **fields: Any) -> int:
    fields = {"started": now_iso(), **fields}
    if "runs" in fields:
        fields["runs"] = json.dumps(fields["runs"])
    cols, marks = ", ".join(fields), ", ".join("?" for _ in fields)
    return _retrying(paths, lambda c: int(c.execute(f"INSERT INTO verifications ({cols}) VALUES ({marks})",
                                                    tuple(fields.values())).lastrowid or 0))


def update_verification(paths: OrgPaths, vid: int, **fields: Any) -> None:
    if "runs" in fields:
        fields["runs"] = json.dumps(fields["runs"])
    sets = ", ".join(f"{k} = ?" for k in fields)
    _retrying(paths, lambda c: c.execute(f"UPDATE verifications SET {sets} WHERE id = ?", (*fields.values(), vid)))


def verifications(paths: OrgPaths, *, exp: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
    sql, args = "SELECT * FROM verifications WHERE 1 = 1", []
    if exp:
        sql += " AND exp = ?"
        args.append(exp)
    if status:
        sql += " AND status = ?"
        args.append(status)
    rows = _read(paths, sql + " ORDER BY id", tuple(args))
    for r in rows:
        r["runs"] = json.loads(r["runs"])
    return rows


def add_review(paths: OrgPaths, *, exp: str, reviewer: str, decision: str, reason: str) -> None:
    """A critic's decision on a candidate (`processes.review`): approve, or refuse with the reason."""
    if decision not in REVIEW_DECISIONS:
        raise LedgerError(f"unknown review decision {decision!r} (one of {', '.join(REVIEW_DECISIONS)})")
    _retrying(paths, lambda c: c.execute("INSERT INTO reviews (exp, reviewer, decision, reason, ts) "
                                         "VALUES (?, ?, ?, ?, ?)", (exp, reviewer, decision, reason, now_iso())))


def reviews(paths: OrgPaths, *, exp: str | None = None) -> list[dict[str, Any]]:
    if exp is None:
        return _read(paths, "SELECT * FROM reviews ORDER BY id")
    return _read(paths, "SELECT * FROM reviews WHERE exp = ? ORDER BY id", (exp,))


def _insert_stamped(paths: OrgPaths, table: str, fields: dict[str, Any]) -> None:
    """One row of `fields` into `table` (a name from this module, never from input), stamped `ts` now."""
    fields = {"ts": now_iso(), **fields}
    cols, marks = ", ".join(fields), ", ".join("?" for _ in fields)
    _retrying(paths, lambda c: c.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", tuple(fields.values())))


def add_promotion(paths: OrgPaths, **fields: Any) -> None:
    _insert_stamped(paths, "promotions", fields)


def promotions(paths: OrgPaths) -> list[dict[str, Any]]:
    return _read(paths, "SELECT * FROM promotions ORDER BY id")


def add_island_migration(paths: OrgPaths, **fields: Any) -> None:
    """The gate moved a branch to another island's head (gate/islands.py)."""
    _insert_stamped(paths, "island_migrations", fields)


def island_migrations(paths: OrgPaths) -> list[dict[str, Any]]:
    return _read(paths, "SELECT * FROM island_migrations ORDER BY id")


def add_branch_revert(paths: OrgPaths, *, branch: str, found: str, restored: str) -> None:
    """A foreign move of the program branch that the gate reverted."""
    _retrying(paths, lambda c: c.execute("INSERT INTO branch_reverts (branch, found, restored, ts) VALUES (?, ?, ?, ?)",
                                         (branch, found, restored, now_iso())))


def branch_reverts(paths: OrgPaths) -> list[dict[str, Any]]:
    return _read(paths, "SELECT * FROM branch_reverts ORDER BY id")


def add_baseline(paths: OrgPaths, **fields: Any) -> None:
    _insert_stamped(paths, "baselines", fields)


def baselines(paths: OrgPaths) -> list[dict[str, Any]]:
    return _read(paths, "SELECT * FROM baselines ORDER BY id")


# ---------------------------------------------------------------------------------------------------------------
# Agents' token use (usage.py reads it from the agents' own records)

USAGE_COUNTS = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "requests")


def record_usage(paths: OrgPaths, agent: str, sessions: list[dict[str, Any]]) -> None:
    """Insert or replace the running totals of an agent's sessions."""
    cols = ("agent", "session", "backend", "model", *USAGE_COUNTS, "cost_usd", "updated")
    stamp = now_iso()
    values = [(agent, s["session"], s["backend"], s["model"], *(int(s[c]) for c in USAGE_COUNTS), s["cost_usd"],
               stamp) for s in sessions]
    sql = f"INSERT OR REPLACE INTO agent_usage ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"
    _retrying(paths, lambda c: c.executemany(sql, values))


def usage_totals(paths: OrgPaths) -> dict[str, dict[str, Any]]:
    """agent -> summed counts over its sessions, `cost_usd` (None if any session's model has no known price),
    `sessions`, `backend` and `model` (its latest session's)."""
    sums = ", ".join(f"SUM({c}) AS {c}" for c in USAGE_COUNTS)
    rows = _read(paths, f"SELECT agent, {sums}, COUNT(*) AS sessions, SUM(cost_usd) AS cost_usd, "
                        "COUNT(cost_usd) AS priced, MAX(updated) AS updated FROM agent_usage GROUP BY agent")
    latest = {r["agent"]: r for r in _read(paths, "SELECT agent, backend, model FROM agent_usage ORDER BY updated")}
    totals = {}
    for r in rows:
        if r["priced"] < r["sessions"]:
            r["cost_usd"] = None
        r.pop("priced")
        totals[r["agent"]] = {**r, "backend": latest[r["agent"]]["backend"], "model": latest[r["agent"]]["model"]}
    return totals


# ---------------------------------------------------------------------------------------------------------------
# results.tsv: autoresearch's columns first (commit, <metric>, memory_gb, status, description), ours after


TSV_EXTRA = ("exp", "kind", "agent", "verdict", "seed", "slot", "wall_s", "train_s", "head", "parent", "diff_stat",
             "org_code", "candidate", "finished", "cpu_s")


def tsv_status(row: dict[str, Any]) -> str:
    """autoresearch's status column: keep (promoted), crash, pending (not decided yet), discard."""
    verdict = row["verdict"]
    if verdict == "promoted":
        return "keep"
    if verdict.startswith("crash"):
        return "crash"
    if verdict in (*UNFINISHED, "candidate", "verifying", "pending"):
        return "pending"
    return "discard"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return " ".join(str(value).split())


def write_results_tsv(paths: OrgPaths, metric_name: str) -> None:
    """Rewrite results.tsv from the ledger (under a lock, so the last writer always wrote the newest view)."""
    paths.locks.mkdir(parents=True, exist_ok=True)
    with open(paths.locks / "results.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = experiments(paths)
        lines = ["\t".join(("commit", metric_name, "memory_gb", "status", "description", *TSV_EXTRA))]
        for r in rows:
            memory = "" if r["memory_gb"] is None else f"{r['memory_gb']:.1f}"
            metric = "" if r["metric"] is None else f"{r['metric']:.6f}"
            lines.append("\t".join((r["commit_sha"][:7], metric, memory, tsv_status(r), _cell(r["description"]),
                                    *(_cell(r[c]) for c in TSV_EXTRA))))
        atomic_write_text(paths.results_tsv, "\n".join(lines) + "\n")
