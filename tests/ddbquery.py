"""Reading a Timelapse .ddb in tests, without holding it open."""
from __future__ import annotations

import sqlite3
from pathlib import Path


def rows(ddb: Path, sql: str, args=()) -> list[tuple]:
    conn = sqlite3.connect(ddb)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()
