"""The pages' list of headers is the one the code has, and their table of metrics the
registry's, both ways; the development page names what scripts/test installs."""

from __future__ import annotations

import ast
import re

import pytest
from aiohttp import hdrs
from prometheus_client.metrics import MetricWrapperBase

from gateway.egress.proxy import FORWARDED_HEADERS
from gateway.metrics import Metrics
from gateway.metrics.processes import PID_LABEL
from tests.docs.pages import REPO, page, section

# A header's name as the code spells it: Dashed-Words, or one of the undashed ones.
_HEADER = re.compile(
    r"(?:[A-Z][A-Za-z]*(?:-[A-Za-z]+)+|Accept|Allow|Authorization|Connection|Expect|"
    r"traceparent|tracestate)"
)


def headers_in_code() -> dict[str, str]:
    """Each header name the gateway's code spells out or takes from aiohttp.hdrs -> a file."""
    found = {}
    for path in sorted((REPO / "gateway").rglob("*.py")):
        if "sandbox" in path.parts:
            continue  # the platform's emulator: not the gateway's headers
        for node in ast.walk(ast.parse(path.read_text())):
            name = None
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                name = node.value
            elif isinstance(node, ast.Attribute) and ast.unparse(node.value) == "hdrs":
                name = str(getattr(hdrs, node.attr))
            if name is not None and _HEADER.fullmatch(name):
                found.setdefault(name, str(path.relative_to(REPO)))
    return found


def header_table() -> dict[str, list[str]]:
    """The "Headers" table (docs/calling.md): each row's where column -> the headers it names."""
    rows: dict[str, list[str]] = {}
    for line in section(page("calling.md"), "## Headers").splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            rows.setdefault(cells[1], []).extend(re.findall(r"`([^`]+)`", cells[0]))
    return rows


def test_every_header_the_code_reads_or_sets_is_in_the_table() -> None:
    listed = {name for names in header_table().values() for name in names}
    missing = {name: path for name, path in headers_in_code().items() if name not in listed}
    assert missing == {}


def test_the_table_lists_exactly_the_caller_headers_that_go_upstream() -> None:
    assert header_table()["caller → platform"] == list(FORWARDED_HEADERS)


@pytest.mark.parametrize(
    ("name", "sentence"),
    [
        ("calling.md", r"only (.+?) go upstream from the caller"),
        ("security.md", r"Only (.+?) of the\s+caller's headers go upstream"),
    ],
    ids=["the request table", "the security guarantees"],
)
def test_the_prose_names_the_same_caller_headers(name: str, sentence: str) -> None:
    match = re.search(sentence, page(name))
    assert match is not None
    assert re.findall(r"`([^`]+)`", match.group(1)) == list(FORWARDED_HEADERS)


# -- the metrics table -----------------------------------------------------------------------


def metrics_table() -> dict[str, list[str]]:
    """The "Metrics" table (docs/operating.md): each metric it names -> the labels its row
    gives."""
    rows: dict[str, list[str]] = {}
    for line in section(page("operating.md"), "## Metrics").splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            labels = re.findall(r"`([^`]+)`", cells[1])
            for name in re.findall(r"`([^`]+)`", cells[0]):
                rows[name] = labels
    return rows


def exported() -> dict[str, list[str] | None]:
    """Each series name the registry exports as the page writes it (a counter with its
    `_total`) -> its label names (None: the process collector's, whose labels are not ours)."""
    metrics = Metrics()
    labels: dict[str, list[str]] = {}
    for collector in vars(metrics).values():
        if isinstance(collector, MetricWrapperBase):
            [family] = collector.describe()
            labels[family.name] = list(collector._labelnames)
    found: dict[str, list[str] | None] = {}
    for family in metrics.registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        found[name] = labels.get(family.name)
    return found


def test_every_exported_metric_is_in_the_table_and_every_row_is_exported() -> None:
    documented, registry = metrics_table(), exported()
    assert sorted(registry.keys() - documented.keys()) == [], "exported, not in the table"
    assert sorted(documented.keys() - registry.keys()) == [], "in the table, not exported"


def test_the_table_gives_each_metric_its_labels() -> None:
    documented = metrics_table()
    wrong = {
        name: (documented.get(name), labels)
        for name, labels in exported().items()
        if labels is not None and documented.get(name) != labels
    }
    assert wrong == {}


def test_the_process_series_are_documented_with_the_label_workers_give_them() -> None:
    documented = metrics_table()
    process = [name for name in exported() if name.startswith("process_")]
    assert process
    assert {name: documented[name] for name in process} == {key: [PID_LABEL] for key in process}


def test_the_development_section_names_every_debian_package_scripts_test_installs() -> None:
    script = (REPO / "scripts" / "test").read_text()
    installed = re.findall(r"missing\+=\((\S+)\)", script)
    assert installed, "scripts/test installs nothing from Debian?"
    development = page("development.md")
    sentence = development[development.index("`./scripts/test` installs the Python test tools") :]
    sentence = sentence[: sentence.index("Without arguments")]
    named = re.findall(r"`([a-z][a-z0-9-]*)`", sentence)
    assert [name for name in named if name in installed] == installed
    assert set(installed) <= set(named)
