"""Run SQL statements on a current ClickHouse engine (chDB, in-process) and report.

Usage: run_sql.py FILE.json  where FILE holds a JSON list of statements, run in order in
one session. Prints one line per statement; exits 1 at the first that fails, with the
engine's error. Used by tests/clickhouse_sql.rs to prove the SQL funnelhub runs on the
local 18.16 server also runs on a current ClickHouse.
"""

import json
import sys

from chdb import session


def main() -> int:
    statements = json.load(open(sys.argv[1]))
    s = session.Session()
    print("engine", s.query("SELECT version()", "TSV").bytes().decode().strip())
    for i, sql in enumerate(statements):
        try:
            s.query(sql, "TSV")
        except Exception as e:  # chDB raises its own error types
            print(f"statement {i} failed: {e}\n{sql}", file=sys.stderr)
            return 1
        print("ok", i, sql.split("\n")[0][:80])
    return 0


if __name__ == "__main__":
    sys.exit(main())
