"""docs/security.md's trust table is `kit.access.ACCESS`, row for row: which workload may call which RPC,
and on whose behalf. A grant added, removed or changed in the code without the page fails here."""

from __future__ import annotations

import re

from kit import access
from tests.repository_bounds import ROOT

PAGE = ROOT / "docs" / "security.md"
# The rules by the names the page gives them: kit.access's own constants.
RULES = {
    name: getattr(access, name) for name in ("SELF", "SELF_OWN", "USER", "USER_OWN", "ADMIN", "FOR_OWNER")
}
TICKED = re.compile(r"^`([\w-]+)`$")

Grants = set[tuple[str, str, str, str]]


def granted() -> Grants:
    """(workload, service, rule, method) for every grant of the table."""
    names = {grant: name for name, grant in RULES.items()}
    return {
        (workload, service, names[grant], method)
        for service, methods in access.ACCESS.items()
        for method, grants in methods.items()
        for workload, grant in grants.items()
    }


def documented(text: str) -> Grants:
    """The same, read off the page's table (`| caller | service | rule | RPCs |`)."""
    section = text.split("\n## The trust table\n", 1)[1].split("\n## ", 1)[0]
    rows: Grants = set()
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not TICKED.match(cells[0]):
            continue
        caller, service, rule, methods = cells
        workload, rule_name = TICKED.fullmatch(caller), TICKED.fullmatch(rule)
        assert workload, line
        assert rule_name, line
        assert rule_name[1] in RULES, f"{line}: unknown rule"
        for method in methods.split(", "):
            name = TICKED.fullmatch(method)
            assert name, f"{line}: {method!r}"
            row = (workload[1], service, rule_name[1], name[1])
            assert row not in rows, f"{row} twice"
            rows.add(row)
    return rows


def test_the_trust_table_is_the_access_table() -> None:
    in_page, in_code = documented(PAGE.read_text(encoding="utf-8")), granted()
    assert sorted(in_code - in_page) == [], "granted in kit/access.py, missing from docs/security.md"
    assert sorted(in_page - in_code) == [], "in docs/security.md, not granted by kit/access.py"


def test_a_difference_is_found() -> None:
    text = PAGE.read_text(encoding="utf-8")
    row = "| `operator` | ledger | `SELF` | "
    edited = text.replace(row + "`ListCallbacks`, ", row)
    assert edited != text
    assert granted() - documented(edited) == {("operator", "ledger", "SELF", "ListCallbacks")}
    edited = text.replace("`Credit`, `Capture`", "`Credit`, `Adjust`, `Capture`")
    assert documented(edited) - granted() == {("operator", "ledger", "SELF", "Adjust")}
