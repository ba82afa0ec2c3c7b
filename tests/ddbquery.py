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


def dump(ddb: Path) -> list[str]:
    """The whole database as SQL text: equal dumps mean nothing changed."""
    conn = sqlite3.connect(ddb)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()
