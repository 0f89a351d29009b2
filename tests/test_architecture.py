"""The package table in docs/architecture.md is the law: every package imports, of
oodida's own, only what its row lists, and no package is missing from the table.

The table is read from the document itself (not copied here), so the document and the
code cannot drift apart; the import graph is grimp's, the library import-linter is built
on, over the installed `oodida` tree (the top-level folders through their links). The
contracts in pyproject.toml (`lint-imports`) must say the same as the table.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
HEADING = "## Packages and who may import whom"
SHELL = "oodida"
EVERY = "every package"
NONE = "—"


@dataclass(frozen=True)
class Row:
    package: str
    folder: str
    may_import: frozenset[str] | None  # None: every package (the shell)


def read_table(text: str) -> dict[str, Row]:
    """The rows of the table under HEADING, by package name; a malformed row is an error
    naming it, so a careless edit of the document fails here, not silently."""
    lines = text.splitlines()
    if HEADING not in lines:
        raise AssertionError(f"{DOC} has no section {HEADING!r}")
    start = lines.index(HEADING) + 1
    table: list[str] = []
    for line in lines[start:]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            table.append(line)
        elif table and line.strip():
            break
    rows: dict[str, Row] = {}
    for line in table[2:]:  # the header and its --- line
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        names = re.findall(r"`([^`]+)`", cells[0])
        folders = re.findall(r"`([^`]+)`", cells[1])
        assert names and folders and len(cells) == 3, f"malformed row in {DOC}: {line}"
        last = cells[-1]
        if last == EVERY:
            may: frozenset[str] | None = None
        elif last == NONE:
            may = frozenset()
        else:
            may = frozenset(re.findall(r"`([^`]+)`", last))
            assert may, f"the last column of {names[0]} names no package: {line}"
        assert names[0] not in rows, f"{names[0]} has two rows in {DOC}"
        rows[names[0]] = Row(names[0], folders[0], may)
    assert SHELL in rows, f"{DOC}: no row for the shell, `{SHELL}`"
    return rows


TABLE = read_table(DOC.read_text())
PACKAGES = sorted(name for name in TABLE if name != SHELL)


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(SHELL, cache_dir=None)


def owner(module: str) -> str:
    """The row a module belongs to: its package's, or the shell's for oodida's own modules."""
    for package in PACKAGES:
        if module == package or module.startswith(package + "."):
            return package
    return SHELL


def test_every_package_of_oodida_has_a_row(graph):
    children = graph.find_children(SHELL)
    packages = {child for child in children if graph.find_children(child)}
    packages |= {child for child in children if (ROOT / SHELL / child.split(".")[-1]).is_dir()}
    assert packages, "grimp found no package in oodida: the graph is not the installed tree"
    missing = sorted(packages - set(PACKAGES))
    assert not missing, f"packages missing from the table in {DOC}: {missing}"
    gone = sorted(set(PACKAGES) - packages)
    assert not gone, f"rows in {DOC} for packages that do not exist: {gone}"


@pytest.mark.parametrize("package", PACKAGES)
def test_the_folder_column_names_the_package_folder(package):
    folder = ROOT / TABLE[package].folder
    link = ROOT / SHELL / package.split(".")[-1]
    assert folder.is_dir(), f"{package}: its folder {TABLE[package].folder} does not exist"
    assert link.resolve() == folder.resolve(), f"{package} is {link.resolve()}, not {TABLE[package].folder}"


@pytest.mark.parametrize("package", [*PACKAGES, SHELL])
def test_a_package_imports_only_what_its_row_allows(graph, package):
    allowed = TABLE[package].may_import
    if allowed is None:
        allowed = frozenset(TABLE)
    allowed |= {package}
    offences = []
    for module in sorted(graph.modules):
        if owner(module) != package:
            continue
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if owner(imported) in allowed:
                continue
            lines = sorted(d["line_number"] for d in graph.get_import_details(importer=module, imported=imported))
            offences.append(f"{module} -> {imported} (line {', '.join(map(str, lines))})")
    may = ", ".join(sorted(allowed - {package})) or "nothing of oodida's"
    assert not offences, f"{package} may import {may} ({DOC.name}), but:\n" + "\n".join(offences)


def test_the_import_contracts_say_what_the_table_says():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert config["root_package"] == SHELL
    forbidden = {}
    for contract in config["contracts"]:
        assert contract["type"] == "forbidden", contract["name"]
        (source,) = contract["source_modules"]
        forbidden[source] = {owner(module) for module in contract["forbidden_modules"]}
    assert sorted(forbidden) == PACKAGES, "one contract per package of the table"
    for package in PACKAGES:
        may = TABLE[package].may_import or frozenset()
        expected = set(TABLE) - may - {package}
        assert forbidden[package] == expected, f"the contract of {package} differs from its row in {DOC.name}"
