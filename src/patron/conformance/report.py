"""The conformance report: a Rich table for people, JUnit XML for CI."""

from __future__ import annotations

import re
import socket
import xml.etree.ElementTree as ET
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from patron.conformance.suite import CheckResult, SuiteReport


def render(report: SuiteReport, console: Console) -> None:
    console.rule(f"Patron conformance: {escape(report.url)} (run {report.run_id})")
    for result in report.results:
        mark = "[green]PASS[/]" if result.passed else "[bold red]FAIL[/]"
        console.print(
            f"{mark} [bold]{escape(result.name)}[/]: {escape(result.title)} "
            f"[dim]({result.seconds:.1f} s)[/]"
        )
        for line in result.evidence:
            console.print("    " + _styled(line), highlight=False)
    table = Table("check", "result", "seconds", "first failure", title="summary")
    for result in report.results:
        table.add_row(
            escape(result.name),
            "[green]PASS[/]" if result.passed else "[bold red]FAIL[/]",
            f"{result.seconds:.1f}",
            escape(result.failures[0]) if result.failures else "",
        )
    console.print(table)
    for line in report.cleanup:
        console.print(f"[dim]clean-up: {escape(line)}[/]")
    failed = report.failed
    passed = len(report.results) - len(failed)
    if failed:
        names = ", ".join(r.name for r in failed)
        console.print(f"[bold red]{len(failed)} failed[/] ({names}), {passed} passed")
    else:
        console.print(f"[bold green]all {passed} checks passed[/]")


def _styled(line: str) -> str:
    text = escape(line)
    if line.startswith("✗"):
        return f"[red]{text}[/]"
    if line.startswith("·"):
        return f"[dim]{text}[/]"
    return text


_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    """What a server answered may hold characters XML 1.0 cannot carry (NUL, lone surrogates)."""
    return _NOT_XML.sub("\ufffd", text)


def junit_xml(report: SuiteReport) -> bytes:
    """One <testsuite>, one <testcase> per check; a failed check carries a <failure> whose
    message is its first broken expectation and whose text is all of its evidence."""
    total = sum(r.seconds for r in report.results)
    suites = ET.Element("testsuites", name="patron-conformance")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name="patron-conformance",
        tests=str(len(report.results)),
        failures=str(len(report.failed)),
        errors="0",
        skipped="0",
        time=f"{total:.3f}",
        timestamp=report.started_at.strftime("%Y-%m-%dT%H:%M:%S"),
        hostname=socket.gethostname(),
    )
    props = ET.SubElement(suite, "properties")
    for name, value in (
        ("url", report.url),
        ("run_id", report.run_id),
        ("programs", ", ".join(report.programs)),
    ):
        ET.SubElement(props, "property", name=name, value=value)
    for result in report.results:
        _case(suite, result)
    if report.cleanup:
        ET.SubElement(suite, "system-out").text = "\n".join(report.cleanup)
    ET.indent(suites)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True)


def _case(suite: ET.Element, result: CheckResult) -> None:
    case = ET.SubElement(
        suite,
        "testcase",
        classname="patron.conformance",
        name=result.name,
        time=f"{result.seconds:.3f}",
    )
    evidence = _xml_text("\n".join(result.evidence))
    if not result.passed:
        failure = ET.SubElement(
            case, "failure", message=_xml_text(result.failures[0][:500]), type="ConformanceFailure"
        )
        failure.text = evidence
    ET.SubElement(case, "system-out").text = evidence


def write_junit(report: SuiteReport, path: Path) -> None:
    path.write_bytes(junit_xml(report))
