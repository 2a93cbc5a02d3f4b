"""The repository explains itself: ``src/``, ``README.md`` and ``docs/`` cite ``docs/`` (or a
public source by name), never the product specification or seed documents a user of the
repository does not have; and every ``docs/<file>.md "Section"`` cited in ``src/`` exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# What only the authors had: the specification (``SPEC.md``, ``SPEC §3``, "the SPEC example"),
# the directory beside the repository (``../shared/…``), and the seed documents by file name
# (``000_744d80534d4a18c0.txt``) or by number ("seed 000", "Seed 003", "seed `002_…`",
# "the seeds' operations"). A random generator's seed ("fixed seed", "seed 4") is not one.
FORBIDDEN = {
    "the specification": re.compile(r"\bSPEC\b|SPEC\.md"),
    "the shared directory": re.compile(r"\.\./shared|\bshared/seeds\b"),
    "a seed file name": re.compile(r"\b\d{3}_[0-9a-f]{16}\b"),
    "a seed document": re.compile(r"\bseeds?\s+`?\d{3}(?!\d)|\bthe\s+seeds?'", re.IGNORECASE),
}

# ``docs/api.md "Reassign"``, ``docs/calendars.md``, "What is written to a calendar"``.
CITATION = re.compile(r'docs/([\w-]+\.md)`{0,2},?\s+"([^"]{1,80})"')
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$", re.MULTILINE)


def _texts() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    for path in sorted((ROOT / "src").rglob("*")):
        built = any(part == "__pycache__" or part.endswith(".egg-info") for part in path.parts)
        if path.is_file() and not built and path.suffix != ".pyc":  # only what the repo holds
            files.append(path)
    return files


def _mentions(text: str) -> list[tuple[int, str, str]]:
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for what, pattern in FORBIDDEN.items():
            match = pattern.search(line)
            if match:
                found.append((number, what, match.group(0)))
    return found


def _normalise(text: str) -> str:
    return " ".join(text.replace("`", "").split()).lower()


def test_the_patterns_catch_what_they_are_for() -> None:
    # Each way the specification and the seeds used to be cited is caught...
    for line in (
        '"""Errors are types (SPEC §2)."""',
        "see ../shared/SPEC.md",
        "(SPEC example uses 100)",
        '"""Seed 003. Fires ``call.outcome_set``."""',
        "# Reassign a closer (seed 000)",
        "### POST /v1/calls/{id}/outcome (seed `003_…`)",
        '"""``/v1/calls``: the seeds\' operations."""',
        "the seed's denormalised copies",
        "/work/shared/seeds/004_40020deb59bdc469.txt",
    ):
        assert _mentions(line), line
    # ... and what merely looks alike is not.
    for line in (
        "Busy intervals are random (fixed seed): they start on a",
        "60 timed runs per case, seed 4",
        'the format is public ("Fernet spec", github.com/fernet/spec)',
        "use an app-specific password",
        'Rule source: docs/api.md "Slots"; Aura Partner API: reassign closer',
    ):
        assert not _mentions(line), line


def test_src_readme_and_docs_cite_nothing_outside_the_repository() -> None:
    found = []
    for path in _texts():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        found += [
            f"{path.relative_to(ROOT)}:{number}: {what} ({match!r})"
            for number, what, match in _mentions(text)
        ]
    assert found == [], "\n".join(found)


def test_the_api_rules_are_in_the_repository_and_the_readme_points_to_them() -> None:
    api = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    headings = {_normalise(h) for h in HEADING.findall(api)}
    for section in (
        "Authentication",
        "Scopes",
        "Errors",
        "Error codes",
        "Requests",
        "Pagination",
        "Idempotency",
        "Rate limits",
        "Times",
        "IDs",
        "Reassign",
        "Outcome",
        "Reschedule",
        "Cancel",
    ):
        assert _normalise(section) in headings, section
    # Idempotency and rate limits have pages of their own; api.md links to them.
    assert "(idempotency.md)" in api
    assert "(rate-limits.md)" in api
    assert "](docs/api.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


def _headings(doc: str) -> list[str]:
    return [_normalise(h) for h in HEADING.findall((ROOT / "docs" / doc).read_text("utf-8"))]


def test_every_docs_section_cited_in_src_exists() -> None:
    missing = []
    for path in sorted((ROOT / "src").rglob("*.py")):
        for doc, section in CITATION.findall(path.read_text(encoding="utf-8")):
            where = f"{path.relative_to(ROOT)}: docs/{doc}"
            if not (ROOT / "docs" / doc).is_file():
                missing.append(f"{where} (no such file)")
            elif not any(h.startswith(_normalise(section)) for h in _headings(doc)):
                missing.append(f'{where} "{section}"')
    assert missing == [], "\n".join(missing)


def test_api_md_links_within_the_page_resolve() -> None:
    api = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    anchors = {
        re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in HEADING.findall(api)
    }
    links = set(re.findall(r"\]\(#([^)]+)\)", api))
    assert links, "api.md links its own sections"
    assert links <= anchors, sorted(links - anchors)
