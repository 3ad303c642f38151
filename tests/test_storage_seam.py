"""The storage seam holds: use cases in `services/` write through `storage/` and never speak a database's dialect,
and each protocol sends a message through the one send use case."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICES = sorted((ROOT / "services").glob("*.py"))
SQL_TEXT = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|BEGIN|COMMIT|RETURNING|ON CONFLICT)\b")
DATABASE_NAMES = re.compile(r"sqlite|postgres|asyncpg|aiosqlite|dialect|group_commit", re.IGNORECASE)


def _strings_and_names(path: Path) -> tuple[list[str], list[str]]:
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    strings = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]
    names = [node.id for node in ast.walk(tree) if isinstance(node, ast.Name)]
    names += [node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)]
    names += [
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom) for alias in node.names
    ]
    names += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    return strings, names


def test_services_hold_no_sql_text_and_no_database_branching() -> None:
    assert SERVICES
    offences = []
    for path in SERVICES:
        strings, names = _strings_and_names(path)
        offences += [f"{path.name}: SQL text {s!r}" for s in strings if SQL_TEXT.search(s)]
        offences += [f"{path.name}: names a database: {n}" for n in names if DATABASE_NAMES.search(n)]
        offences += [f"{path.name}: raw SQL through text()" for n in names if n == "text"]
    assert offences == []


def test_the_send_use_case_exists_once_and_both_protocols_use_it() -> None:
    defined = [
        path.name
        for path in SERVICES
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.AsyncFunctionDef) and node.name == "send_message"
    ]
    assert defined == ["messages.py"]
    for caller in ("resolvers/mutation.py", "legacy_ws/endpoint.py"):
        assert "messages.send_message(" in (ROOT / caller).read_text(), caller
