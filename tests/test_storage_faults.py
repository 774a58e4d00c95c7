"""Storage faults: one sentence naming the history, exit code 2, never a traceback, and nothing lost.

Real files in tmp_path throughout. The faults of a disk (read-only, full, I/O error) are made for real in a
private mount namespace (``unshare -m``), which needs root; without it those tests are skipped, except the
read-only file, which ``chmod`` makes for a user who is not root.
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.config import Settings
from pipeline.errors import StorageError
from pipeline.orchestration.states import State
from pipeline.store import MIGRATIONS, Store
from pipeline.store.base import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parent.parent
T0 = dt.datetime(2026, 3, 1, 12, tzinfo=dt.timezone.utc)
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                               reason="mounts a read-only or tiny file system: needs root and unshare")


def make_run(store: Store, day: int = 15) -> str:
    date = f"2021-08-{day:02d}"
    return store.create_run(flow="fhv-duration-training", name=f"run-{day}", state=State.SCHEDULED, now=T0,
                            parameters={"date": date}, scheduled_time=T0, run_date=date, train_month="2021-06",
                            val_month="2021-07", work_queue="default")


def history(home: Path, runs: int = 2) -> Path:
    """A home as the pipeline leaves it: a history with ``runs`` runs, a cache and an artifacts folder."""
    Settings(home=home).ensure_dirs()
    store = Store(home / "history.db")
    for day in range(1, runs + 1):
        make_run(store, day)
    store.close()
    return home / "history.db"


def cli(monkeypatch, capsys, home: Path, *argv: str) -> tuple[int, str]:
    monkeypatch.setenv("FHV_HOME", str(home))
    monkeypatch.setenv("FHV_DATA_URL", "demo:2000")
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out + err


def run_ids(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM flow_runs ORDER BY id")]


def integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


# -- corrupt and truncated files ----------------------------------------------------------------

def garbage(data: bytes) -> bytes:
    return b"this is not a history, just some text\n" * 200


def half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def header_only(data: bytes) -> bytes:
    return data[:100]


def torn_page(data: bytes) -> bytes:
    """The schema (the end of the first page) overwritten with zeros, as a torn write could leave it."""
    return data[:1000] + bytes(4096 - 1000) + data[4096:]


@pytest.mark.parametrize("damage", [garbage, half, header_only, torn_page])
@pytest.mark.parametrize("command", [["runs", "ls"], ["runs", "show", "run-1"], ["trigger", "--date", "2021-03-15"],
                                     ["backfill", "--start", "2021-03-01", "--end", "2021-05-01", "--dry-run"]])
def test_a_corrupt_or_truncated_history_gives_one_sentence_and_is_left_as_it_was(tmp_path, monkeypatch, capsys,
                                                                                  damage, command):
    path = history(tmp_path / "fhv")
    path.write_bytes(damage(path.read_bytes()))
    before = path.read_bytes()
    code, output = cli(monkeypatch, capsys, tmp_path / "fhv", *command)
    assert code == 2 and "Traceback" not in output
    assert f"error: The history {path} " in output and "corrupt or truncated" in output, output
    assert path.read_bytes() == before


@pytest.mark.parametrize("readonly", [False, True])
def test_the_store_names_a_file_that_is_not_a_database(tmp_path, readonly):
    path = tmp_path / "history.db"
    path.write_bytes(b"\x00" * 100 + b"junk" * 1000)
    with pytest.raises(StorageError, match=f"The history {path} is not a SQLite database.*file is not a database"):
        Store(path, readonly=readonly).runs(limit=1)


# -- a history written by a newer version --------------------------------------------------------

def test_the_schema_version_is_the_number_of_the_newest_migration():
    assert SCHEMA_VERSION == int(MIGRATIONS[-1][0].split("_")[0]) >= len(MIGRATIONS)


def add_migration(path: Path, name: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO migrations VALUES (?, '2030-01-01T00:00:00.000000Z')", (name,))
    conn.close()


def test_a_history_from_a_newer_schema_is_refused_with_both_version_numbers(tmp_path, monkeypatch, capsys):
    path = history(tmp_path / "fhv")
    newer = SCHEMA_VERSION + 2
    add_migration(path, f"{newer:04d}_from_the_future")
    before = path.read_bytes()
    code, output = cli(monkeypatch, capsys, tmp_path / "fhv", "runs", "ls")
    assert code == 2 and "Traceback" not in output
    assert f"was written by schema version {newer}; this version of the pipeline knows up to {SCHEMA_VERSION}" \
        in output
    assert path.read_bytes() == before


def test_a_read_only_store_refuses_a_newer_schema_too(tmp_path):
    path = history(tmp_path / "fhv")
    add_migration(path, f"{SCHEMA_VERSION + 1:04d}_from_the_future")
    reader = Store(path, readonly=True)
    with pytest.raises(StorageError, match=f"schema version {SCHEMA_VERSION + 1}; .* knows up to {SCHEMA_VERSION}"):
        reader.runs(limit=1)
    with pytest.raises(StorageError):  # and again: a refused connection is not kept
        reader.runs(limit=1)


def test_an_unknown_schema_change_of_an_old_number_is_refused_naming_it(tmp_path):
    path = history(tmp_path / "fhv")
    add_migration(path, "0002_from_a_branch")
    with pytest.raises(StorageError, match="the schema change '0002_from_a_branch', which this version"):
        Store(path)


# -- a full disk ------------------------------------------------------------------------------

def test_a_full_disk_during_a_write_keeps_every_earlier_row_and_a_sound_file(tmp_path):
    store = Store(tmp_path / "history.db")
    kept = [make_run(store, day) for day in (1, 2, 3)]
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.conn.execute(f"PRAGMA max_page_count={pages}")  # SQLite's own SQLITE_FULL, on this connection only
    with pytest.raises(StorageError, match=f"The history {store.path} cannot grow because the disk is full; "
                                           r"nothing was written.*\(SQLite: database or disk is full\)"):
        with store.atomic() as conn:
            make_run(store, 4)
            conn.executemany("INSERT INTO logs (flow_run_id, ts, level, message) VALUES (?, ?, 'INFO', ?)",
                             [(kept[0], "2026-03-01T12:00:00.000000Z", "x" * 2000)] * 200)
    assert not store.conn.in_transaction
    assert store.integrity_check() == "ok"
    store.close()
    assert run_ids(tmp_path / "history.db") == sorted(kept) and integrity(tmp_path / "history.db") == "ok"


def test_after_a_full_disk_the_store_writes_again_once_there_is_room(tmp_path):
    store = Store(tmp_path / "history.db")
    make_run(store, 1)
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.conn.execute(f"PRAGMA max_page_count={pages}")
    with pytest.raises(StorageError, match="disk is full"):
        with store.atomic() as conn:
            conn.executemany("INSERT INTO logs (flow_run_id, ts, level, message) VALUES (?, ?, 'INFO', ?)",
                             [(run_ids(store.path)[0], "2026-03-01T12:00:00.000000Z", "x" * 2000)] * 200)
    store.conn.execute(f"PRAGMA max_page_count={pages * 100}")
    make_run(store, 2)
    assert len(store.runs(limit=10)) == 2


# -- file-system faults, for real -------------------------------------------------------------

def in_namespace(script: str, home: Path, *argv: str) -> subprocess.CompletedProcess:
    """Run ``script`` (shell, sets up mounts) and then ``python -m pipeline ARGV`` in a private mount namespace."""
    command = f"set -e\n{script}\nexec {sys.executable} -m pipeline \"$@\""
    env = {**os.environ, "FHV_HOME": str(home), "FHV_DATA_URL": "demo:2000"}
    return subprocess.run(["unshare", "-m", "sh", "-c", command, "sh", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


CANNOT_OPEN = ("cannot be opened: check that its folder exists, that this user may write in it and that its disk "
               "is not mounted read-only (SQLite: unable to open database file)")
CANNOT_WRITE = ("cannot be written: check the permissions of the file and its folder, and whether the disk is "
                "mounted read-only (SQLite: attempt to write a readonly database)")
READ_ONLY_FOLDER = 'mount --bind "$FHV_HOME" "$FHV_HOME"; mount -o remount,ro,bind "$FHV_HOME"'
READ_ONLY_FILE = ('mount --bind "$FHV_HOME/history.db" "$FHV_HOME/history.db"; '
                  'mount -o remount,ro,bind "$FHV_HOME/history.db"')


@ROOT_ONLY
@pytest.mark.parametrize("script, says", [
    (READ_ONLY_FOLDER, [CANNOT_OPEN, CANNOT_WRITE]),  # which one depends on SQLite's files beside the history
    (READ_ONLY_FILE, [CANNOT_WRITE]),
])
def test_a_read_only_disk_refuses_a_write_with_one_sentence_and_keeps_the_history(tmp_path, script, says):
    path = history(tmp_path / "fhv")
    before = run_ids(path)
    done = in_namespace(script, tmp_path / "fhv", "trigger", "--date", "2021-03-15")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert any(f"error: The history {path} {it}." in " ".join(done.stderr.split()) for it in says), done.stderr
    assert run_ids(path) == before and integrity(path) == "ok"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to a read-only file anyway")
def test_a_read_only_file_refuses_a_write_with_one_sentence(tmp_path, monkeypatch, capsys):
    path = history(tmp_path / "fhv")
    before = run_ids(path)
    path.chmod(0o444)
    code, output = cli(monkeypatch, capsys, tmp_path / "fhv", "trigger", "--date", "2021-03-15")
    assert code == 2 and "Traceback" not in output and f"The history {path} cannot" in output
    assert run_ids(path) == before


TINY_DISK = """
cp "$FHV_HOME/history.db" "$FHV_HOME.copy"
mount -t tmpfs -o size=1m tmpfs "$FHV_HOME"
mv "$FHV_HOME.copy" "$FHV_HOME/history.db"
mkdir "$FHV_HOME/cache" "$FHV_HOME/artifacts"
"""
HOLD_OPEN = """
"$PYTHON" -c 'import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1]); c.execute("SELECT 1 FROM flow_runs").fetchall(); time.sleep(30)' "$FHV_HOME/history.db" &
HOLDER=$!
sleep 0.5
"""
FILL_AND_WRITE = """
dd if=/dev/zero of="$FHV_HOME/filler" bs=4k 2>/dev/null || true
"$PYTHON" -m pipeline trigger --date 2021-03-15 || echo "exit=$?"
rm "$FHV_HOME/filler"
"$PYTHON" -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); print(c.execute("PRAGMA integrity_check").fetchone()[0], c.execute("SELECT count(*) FROM flow_runs").fetchone()[0])' "$FHV_HOME/history.db"
[ -z "$HOLDER" ] || kill "$HOLDER"
"""


@ROOT_ONLY
@pytest.mark.parametrize("script, says", [
    # the WAL and its index exist already (another process has the history open): the WAL cannot grow
    (TINY_DISK + HOLD_OPEN + FILL_AND_WRITE, "cannot grow because the disk is full; nothing was written: free some "
                                             "space and try again (SQLite: database or disk is full)"),
    # no room even for the WAL index: SQLite calls that an I/O error
    (TINY_DISK + FILL_AND_WRITE, "could not be read or written: check the disk it is on, and whether it is full "
                                 "(SQLite: disk I/O error)"),
])
def test_a_full_disk_gives_one_sentence_and_loses_nothing(tmp_path, script, says):
    path = history(tmp_path / "fhv", runs=3)
    env = {**os.environ, "FHV_HOME": str(tmp_path / "fhv"), "FHV_DATA_URL": "demo:2000", "PYTHON": sys.executable}
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env=env)
    assert "Traceback" not in done.stderr, done.stderr
    assert f"error: The history {path} {says}." in " ".join(done.stderr.split()), done.stderr
    assert "exit=2" in done.stdout
    assert done.stdout.split()[-2:] == ["ok", "3"], done.stdout  # the history as it was, and sound


# -- FHV_HOME that a URI would misread ---------------------------------------------------------

@pytest.mark.parametrize("name", ["with # hash", "what?", "100%", "two  spaces", "%20#?%"])
def test_a_read_only_store_opens_the_history_in_a_folder_with_uri_characters(tmp_path, name):
    path = history(tmp_path / name / "fhv", runs=2)
    reader = Store(path, readonly=True)
    assert sorted(r["id"] for r in reader.runs(limit=10)) == run_ids(path)
    assert sorted(p.name for p in tmp_path.rglob("*.db")) == ["history.db"]  # no stray history elsewhere


@pytest.mark.parametrize("name", ["with # hash", "what?", "100%", "two  spaces"])
def test_the_command_line_reads_a_history_in_a_folder_with_uri_characters(tmp_path, monkeypatch, capsys, name):
    home = tmp_path / name
    history(home, runs=2)
    code, output = cli(monkeypatch, capsys, home, "backfill", "--start", "2021-03-01", "--end", "2021-05-01",
                       "--dry-run")  # a dry run reads through a read-only store
    assert code == 0 and "Would enqueue" in output
    code, output = cli(monkeypatch, capsys, home, "runs", "ls", "--json")
    assert code == 0 and output.count('"id"') == 2


def test_a_run_records_its_history_in_a_folder_named_with_hash_question_mark_percent_and_spaces(tmp_path):
    home = tmp_path / "my #1 fhv? 100% done"
    env = {**os.environ, "FHV_HOME": str(home)}
    done = subprocess.run([sys.executable, "-m", "pipeline", "run", "--date", "2021-03-15", "--data-url",
                           "demo:2000", "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    reader = Store(home / "history.db", readonly=True)
    assert [r["state"] for r in reader.runs(limit=5)] == ["COMPLETED"]
    assert all(Path(a["path"]).is_relative_to(home) for r in reader.runs(limit=5) for a in reader.artifacts(r["id"]))


# -- what the command line says about the folder itself ---------------------------------------

def test_an_fhv_home_that_is_a_file_gives_one_sentence(tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("not a folder")
    code, output = cli(monkeypatch, capsys, tmp_path / "file", "runs", "ls")
    assert code == 2 and "Traceback" not in output
    assert f"error: Could not use {tmp_path / 'file'} (FHV_HOME): File exists." in output


def test_a_history_that_is_a_folder_gives_one_sentence(tmp_path, monkeypatch, capsys):
    (tmp_path / "fhv" / "history.db").mkdir(parents=True)
    code, output = cli(monkeypatch, capsys, tmp_path / "fhv", "runs", "ls")
    assert code == 2 and "Traceback" not in output
    assert f"The history {tmp_path / 'fhv' / 'history.db'} cannot be opened" in output


def test_a_history_locked_too_long_gives_one_sentence(tmp_path, monkeypatch, capsys):
    path = history(tmp_path / "fhv")
    monkeypatch.setattr("pipeline.store.base.BUSY_TIMEOUT_MS", 50)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        code, output = cli(monkeypatch, capsys, tmp_path / "fhv", "trigger", "--date", "2021-03-15")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert code == 2 and "Traceback" not in output
    assert f"error: The history {path} is busy" in output and "try again" in output


def test_a_thread_of_a_store_whose_history_was_deleted_never_makes_an_empty_one(tmp_path):
    import threading

    path = tmp_path / "fhv" / "history.db"
    store = Store(path)
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    said: list[str] = []

    def read() -> None:  # a thread of its own opens a connection of its own
        try:
            store.runs(limit=1)
        except StorageError as error:
            said.append(str(error))

    thread = threading.Thread(target=read)
    thread.start()
    thread.join()
    assert said == [f"The history {path} is gone: it was deleted or moved while this process used it; "
                    "nothing was written."]
    assert not path.exists()
    store.close()


def test_a_zero_length_history_file_is_made_a_new_history_and_said_so(tmp_path, monkeypatch, capsys, caplog):
    home = tmp_path / "fhv"
    Settings(home=home).ensure_dirs()
    (home / "history.db").write_bytes(b"")
    code, _ = cli(monkeypatch, capsys, home, "trigger", "--date", "2021-03-15")
    assert code == 0 and run_ids(home / "history.db")
    assert (f"The history {home / 'history.db'} was an empty file (0 bytes), so a new history was made in it; if "
            "it held runs, stop every process using it and put back a copy.") in caplog.text
    caplog.clear()
    assert cli(monkeypatch, capsys, home, "runs", "ls")[0] == 0 and "empty file" not in caplog.text
