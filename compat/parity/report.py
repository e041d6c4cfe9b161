"""The parity run's results as people and CI read them: a table on the terminal, a JUnit XML file (one test case
per request) and a JSON file with every difference."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from drum_compat.compat.parity.cases import Case
from drum_compat.compat.parity.compare import Difference

SHOWN_DIFFERENCES = 20  # on the terminal; the files hold them all
WHOLE_BODY = 400  # characters: a longer body is shown on the terminal from a little before where the two part
BEFORE_PARTING, AFTER_PARTING = 120, 280
SHOWN_FIRST = ("user", "replay", "data", "fuzz", "payloads", "protocol", "routes")  # the user's own requests matter most


@dataclass(frozen=True)
class Result:
    case: Case
    differences: tuple[Difference, ...]
    status_a: int
    status_b: int
    documented: tuple[tuple[Difference, str], ...] = ()  # with --against DRUM: each with the guide's row that lists it

    @property
    def alike(self) -> bool:
        return not self.differences


def print_table(results: list[Result], label_a: str, label_b: str, console: Console) -> None:
    groups = list(dict.fromkeys(result.case.group for result in results))
    total, different = Counter(result.case.group for result in results), Counter(r.case.group for r in results if not r.alike)
    documented = Counter(r.case.group for r in results if r.alike and r.documented)
    table = Table(title=f"parity: {label_a} vs {label_b}")
    columns = ("group", "cases", "alike", "documented", "different") if documented else ("group", "cases", "alike", "different")
    for column in columns:
        table.add_column(column, justify="left" if column == "group" else "right")

    def row(name: str, cases: int, deliberate: int, differing: int, **style) -> None:
        counts = [cases, cases - deliberate - differing] + ([deliberate] if documented else []) + [differing]
        table.add_row(name, *map(str, counts), **style)

    for group in groups:
        row(group, total[group], documented[group], different[group])
    row("all", len(results), sum(documented.values()), sum(different.values()), style="bold")
    console.print(table)
    if documented:
        reasons = Counter(row for r in results for row in {row for _, row in r.documented})
        console.print("documented differences (migration_guide.md, \"Where drum-compat deliberately differs\"):")
        for reason, count in reasons.most_common():
            console.print(f"    {reason}: {count} answers", markup=False, highlight=False)
    failed = sorted((result for result in results if not result.alike), key=lambda result: SHOWN_FIRST.index(result.case.group))
    for result in failed[:SHOWN_DIFFERENCES]:
        console.print(f"[bold red]different[/] {result.case.label} ({result.case.method} {result.case.path})", highlight=False)
        for difference in result.differences:
            for line in shown(difference, label_a, label_b):
                console.print(f"    {line}", markup=False, highlight=False)
    if len(failed) > SHOWN_DIFFERENCES:
        console.print(f"... and {len(failed) - SHOWN_DIFFERENCES} more (see --json or --junit)")


def shown(difference: Difference, label_a: str, label_b: str) -> list[str]:
    """A difference on the terminal: on one line, or, for bodies, each side on a line of its own, named by its stack;
    a long body from just before where the two part, so that what differs is always in view."""
    if difference.part != "body":
        return [difference.said(label_a, label_b)]
    width = max(len(label_a), len(label_b)) + 1
    if max(len(difference.a), len(difference.b)) <= WHOLE_BODY:
        return ["body:"] + [f"    {f'{label}:':<{width}} {body}" for label, body in ((label_a, difference.a), (label_b, difference.b))]
    start = max(0, difference.parted_at - BEFORE_PARTING)
    lines = [difference.summary(label_a, label_b) + ", shown from character " + str(start) + " (--json and --junit hold both whole):"]
    for label, body in ((label_a, difference.a), (label_b, difference.b)):
        part = body[start:difference.parted_at + AFTER_PARTING]
        lines.append(f"    {f'{label}:':<{width}} {'…' if start else ''}{part}{'…' if len(body) > start + len(part) else ''}")
    return lines


def as_json(difference: Difference) -> dict:
    return {"part": difference.part, "a": difference.a, "b": difference.b}


def write_junit(results: list[Result], label_a: str, label_b: str, path: Path, seconds: float) -> None:
    suite = ElementTree.Element("testsuite", name=f"drum-compat parity {label_a} vs {label_b}", tests=str(len(results)),
                                failures=str(sum(not result.alike for result in results)), errors="0", time=f"{seconds:.3f}")
    for result in results:
        case = ElementTree.SubElement(suite, "testcase", classname=f"parity.{result.case.group}", name=result.case.name)
        if not result.alike:
            failure = ElementTree.SubElement(case, "failure", message=result.differences[0].summary(label_a, label_b))
            failure.text = f"{result.case.method} {result.case.path}\n" + "\n".join(
                difference.said(label_a, label_b) for difference in result.differences)
    root = ElementTree.Element("testsuites", name="drum-compat parity")
    root.append(suite)
    ElementTree.indent(root)
    ElementTree.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def write_json(results: list[Result], label_a: str, label_b: str, path: Path) -> None:
    document = {
        "a": label_a, "b": label_b,
        "summary": {"cases": len(results), "different": sum(not result.alike for result in results)},
        "cases": [{"group": r.case.group, "name": r.case.name, "method": r.case.method, "path": r.case.path,
                   "alike": r.alike, "status": [r.status_a, r.status_b],
                   "differences": [as_json(difference) for difference in r.differences],
                   "documented": [{**as_json(difference), "guide": row} for difference, row in r.documented]}
                  for r in results],
    }
    Path(path).write_text(json.dumps(document, indent=2) + "\n")
