"""A newer clawgate meeting a database an older one is still using."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

from clawgate.runtime.owner import process_start, this_process
from clawgate.store.sqlite_schema import migrations
from tests.acceptance.cli import Home
from tests.old_databases import add_owner, add_session, database_at, messages_in, schema_of


def test_the_upgrade_waits_until_the_older_clawgate_using_the_database_has_stopped(
    home: Home,
) -> None:
    path = home.path / "clawgate.db"
    me = this_process(datetime.now(UTC))
    older = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    raw = database_at(path, 4)
    add_session(raw, "s1", "hello from before")
    # A live process on this machine whose last heartbeat is old (a long lease): still in use.
    add_owner(raw, datetime.now(UTC) - timedelta(hours=1), pid=older.pid, host=me.host,
              boot_id=me.boot_id, process_start=process_start(older.pid))
    raw.close()
    try:
        refused = home.run("sessions", "list")
    finally:
        older.kill()
        older.wait()

    assert refused.returncode == 1
    assert f"pid {older.pid} on {me.host}" in refused.stderr
    assert "Stop it, then run clawgate again to upgrade the database" in refused.stderr
    assert schema_of(path) == 4

    upgraded = home.run("sessions", "list")  # it has stopped now

    assert upgraded.returncode == 0, upgraded.stderr
    backup = home.path / "clawgate.db.bak-v4"
    assert f"kept as {backup}" in upgraded.stderr
    assert schema_of(path) == max(m.version for m in migrations())
    assert messages_in(backup) == {("s1", "hello from before")} == messages_in(path)
