"""schema.graphql, the schema clients generate code from, is the code's schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from resolvers.app import schema_sdl
from tests.support import ROOT


def test_schema_graphql_matches_the_code() -> None:
    committed = (ROOT / "schema.graphql").read_text(encoding="utf-8")
    assert committed == schema_sdl(), "schema.graphql is stale: run `python cli.py export-schema`"


def test_export_schema_command_writes_the_codes_schema(tmp_path: Path) -> None:
    target = tmp_path / "out.graphql"
    subprocess.run([sys.executable, "cli.py", "export-schema", str(target)], cwd=ROOT, check=True, timeout=60)
    text = target.read_text(encoding="utf-8")
    assert text == schema_sdl()
    assert "chatEvents(" in text and "type Subscription" in text
