"""Which tables a SQL statement writes: the parsing half of the invalidation SQL hook.

Only the statement's head is read (verb, then the table name), so it costs one anchored regex
match per statement: a ``SELECT`` fails at its first letter. Quoting styles of every backend
Django ships are understood (``"t"``, ```t```, ``[t]``, bare), as are schema-qualified names,
leading ``/* comments */`` and ``TRUNCATE``'s list of tables.
"""

from __future__ import annotations

import re

__all__ = ["written_tables"]

_WRITE = re.compile(
    r"\s*(?:/\*.*?\*/\s*)*"  # leading comments (query tagging libraries add them)
    r"(INSERT\s+(?:OR\s+\w+\s+)?INTO|REPLACE\s+INTO|UPDATE|DELETE\s+FROM|TRUNCATE(?:\s+TABLE)?)"
    r"\s+(?:ONLY\s+)?",
    re.IGNORECASE | re.DOTALL,
)
_IDENT = r'(?:"(?:[^"]|"")+"|`[^`]+`|\[[^\]]+\]|[\w$]+)'
_QUALIFIED = re.compile(rf"{_IDENT}(?:\s*\.\s*{_IDENT})*")  # schema.table
_IDENTS = re.compile(_IDENT)
_COMMA = re.compile(r"\s*,\s*")


def written_tables(sql: str) -> list[str]:
    """The (lowercased) tables an INSERT/UPDATE/DELETE/TRUNCATE statement writes; [] else."""
    match = _WRITE.match(sql)
    if match is None:
        return []
    truncate = match.group(1)[:1] in "Tt"  # the only verb that takes a list of tables
    tables: list[str] = []
    pos = match.end()
    while (name := _QUALIFIED.match(sql, pos)) is not None:
        table = _IDENTS.findall(name.group())[-1]
        if table[:1] in '"`[':
            table = table[1:-1].replace('""', '"')
        tables.append(table.lower())
        comma = _COMMA.match(sql, name.end()) if truncate else None
        if comma is None:
            break
        pos = comma.end()
    return tables
