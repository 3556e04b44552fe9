from __future__ import annotations

from devkit.protogen import stale_files


def test_generated_code_is_fresh() -> None:
    """`make protos` regenerates atelier/ from protos/; a stale checkout fails here."""
    assert stale_files() == []
