"""The repository stands alone: a user who clones only this project has every file it reads
and every document it cites.

- No project text file points outside the checkout (a sibling ``shared`` folder, or an
  absolute path of the machine the project was developed on).
- Every bundled reference file listed in validation/neupims/reference/README.md is there,
  byte for byte (SHA-256), and nothing unlisted sits beside them.
- Every citation ``docs/sources/<page>.md §N`` names a page and a section that exist.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from neupims.config.loader import ROOT

#: the two patterns, built so that this file does not contain them literally
FORBIDDEN = ("../" + "shared", "/" + "work" + "/")

#: folders never scanned when git is not available (build outputs, caches, environments)
SKIP_DIRS = {
    ".git",
    ".venv",
    "venv",
    "build",
    "dist",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    "results",
    "out",
}

REFERENCE = ROOT / "validation" / "neupims" / "reference"
SOURCES = ROOT / "docs" / "sources"


def project_files() -> list[Path]:
    """Tracked plus untracked-but-not-ignored files (so a new file is checked before it is
    committed); without git, every file outside the build and cache folders."""
    if shutil.which("git") and (ROOT / ".git").exists():
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
        names = [n for n in out.decode().split("\0") if n]
        return [ROOT / n for n in names if (ROOT / n).is_file()]
    files = []
    for p in ROOT.rglob("*"):
        rel = p.relative_to(ROOT)
        if any(part in SKIP_DIRS or part.endswith(".egg-info") for part in rel.parts):
            continue
        if p.is_file():
            files.append(p)
    return files


def text_of(path: Path) -> str | None:
    """The file as text, or None for a binary file (NUL bytes or not UTF-8)."""
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def test_no_file_points_outside_the_repository():
    files = project_files()
    assert len(files) > 100  # the scan really covered the project
    bad = []
    for path in files:
        text = text_of(path)
        if text is None:
            continue
        for lineno, line in enumerate(text.splitlines(), start=1):
            for pattern in FORBIDDEN:
                if pattern in line:
                    bad.append(f"{path.relative_to(ROOT)}:{lineno}: {pattern!r}")
    assert not bad, "paths outside the repository:\n" + "\n".join(bad)


def bundled_checksums() -> dict[str, str]:
    """file (relative to the reference folder) -> SHA-256, from the README's checksum table."""
    readme = (REFERENCE / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([^`]+)` \| `([0-9a-f]{64})` \|$", readme, flags=re.M)
    return dict(rows)


def test_bundled_reference_files_exist_unmodified():
    listed = bundled_checksums()
    assert len(listed) >= 11, "the checksum table of the reference README was not found"
    for name, digest in listed.items():
        path = REFERENCE / name
        assert path.is_file(), f"{path.relative_to(ROOT)}: listed in the README but missing"
        got = hashlib.sha256(path.read_bytes()).hexdigest()
        assert got == digest, f"{path.relative_to(ROOT)}: SHA-256 {got}, README says {digest}"
    present = {p.relative_to(REFERENCE).as_posix() for p in REFERENCE.rglob("*") if p.is_file()} - {
        "README.md"
    }
    assert present <= set(listed), f"not listed in the README: {sorted(present - set(listed))}"


def sections(page: Path) -> set[str]:
    """Section numbers of a sources page: headings '## §7 ...' and '### §1.2 ...'."""
    text = page.read_text(encoding="utf-8")
    return set(re.findall(r"^#{2,3} §(\d+(?:\.\d+)?)\b", text, flags=re.M))


@pytest.mark.parametrize(
    "page,count", [("neupims", 17), ("workloads", 7), ("kernels", 9), ("peers", 5)]
)
def test_sources_pages_keep_their_section_numbers(page, count):
    top = {s for s in sections(SOURCES / f"{page}.md") if "." not in s}
    assert top == {str(i) for i in range(1, count + 1)}


#: a citation and the sections chained to it: 'docs/sources/neupims.md §3-§6 and §14'
CITATION = re.compile(r"docs/sources/(\w+)\.md ((?:§\d+(?:\.\d+)?(?:\s*(?:-|,|/|and)\s*)?)+)")


def test_every_citation_names_an_existing_section():
    known = {p.stem: sections(p) for p in SOURCES.glob("*.md") if p.stem != "README"}
    seen, bad = 0, []
    for path in project_files():
        text = text_of(path)
        if text is None:
            continue
        for m in CITATION.finditer(text):
            page = m.group(1)
            for sec in re.findall(r"§(\d+(?:\.\d+)?)", m.group(2)):
                seen += 1
                if page not in known or sec not in known[page]:
                    bad.append(f"{path.relative_to(ROOT)}: docs/sources/{page}.md §{sec}")
    assert seen > 100  # the project does cite its sources
    assert not bad, "citations of missing pages or sections:\n" + "\n".join(bad)
