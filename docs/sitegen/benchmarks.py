"""Benchmark pages, read from ``benchmarks/results/*.json`` (and a Markdown report beside one).

The results have no common schema, so the renderer goes by shape, not by name:

- top-level numbers and strings form the *settings* table (the first of ``benchmark``, ``what``,
  ``description``, ``pass`` leads the page);
- a list of records, or a mapping of records (a mapping whose values are mappings), becomes one
  table with a row per record; fields that are numbers, strings, short lists, ``{mean, std}``
  pairs or flat mappings of these become columns (``summary.map@r``), deeper fields are named
  under the table; a table with many columns and few rows is turned on its side;
- any other mapping becomes its own section, recursively, and what is still nested deeper than
  tables allow is shown folded as JSON (sections with folded JSON come after the tables);
- ``machine`` (date, CPU, cores, threads, load, versions) closes every page.

Nothing in a result can stop the build: an unexpected shape falls back to folded JSON.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sitegen.markdown import Page, cell, code, fenced, number, table

LEAD_KEYS = ("benchmark", "what", "description", "pass")
MAX_LIST = 5
MAX_COLUMNS = 9
MAX_ROWS_TO_TURN = 6


@dataclass(frozen=True)
class Result:
    """One result file: its name (the file stem), its data and its Markdown report, if any."""

    name: str
    data: Any
    report: str


def is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def scalar(value: Any, key: str = "") -> str:
    """A number, string, boolean or null for a table cell."""
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and key.endswith("_bytes"):
        return f"{value / 2**20:.1f} MiB"
    return number(value)


def is_mean_std(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and set(value) == {"mean", "std"}
        and all(isinstance(v, int | float) for v in value.values())
    )


def as_cell(value: Any, key: str = "") -> str | None:
    """``value`` as one table cell, or None when it does not fit in one."""
    if is_scalar(value):
        return scalar(value, key)
    if is_mean_std(value):
        return f"{number(value['mean'])} ± {number(value['std'])}"
    if isinstance(value, list) and all(is_scalar(v) for v in value):
        if len(value) <= MAX_LIST:
            return ", ".join(scalar(v, key) for v in value) if value else "–"
        numbers = [v for v in value if isinstance(v, int | float) and not isinstance(v, bool)]
        if len(numbers) == len(value):
            return f"median {number(statistics.median(numbers))} of {len(value)}"
        return f"{len(value)} values"
    return None


def _columns(record: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """A record's cells by column name (flat mappings spread as ``key.sub``), and the names of
    fields too deep for a cell."""
    cells: dict[str, str] = {}
    deep: list[str] = []
    for key, value in record.items():
        found = as_cell(value, key)
        if found is not None:
            cells[str(key)] = found
        elif isinstance(value, dict) and value:
            inner = {k: as_cell(v, k) for k, v in value.items()}
            if all(v is not None for v in inner.values()):
                cells.update({f"{key}.{k}": v for k, v in inner.items() if v is not None})
            else:
                deep.append(str(key))
        else:
            deep.append(str(key))
    return cells, deep


def records_table(records: list[tuple[str, dict[str, Any]]], label: str) -> str:
    """One table for ``records`` (``(row name, record)``; the name column is left out when
    every name is empty)."""
    rows = [(name, *_columns(record)) for name, record in records]
    columns: list[str] = []
    deep: list[str] = []
    for _, cells, too_deep in rows:
        columns += [c for c in cells if c not in columns]
        deep += [d for d in too_deep if d not in deep]
    named = any(name for name, _, _ in rows)
    header = ([label] if named else []) + columns
    body = [
        ([name] if named else []) + [cells.get(c, "") for c in columns] for name, cells, _ in rows
    ]
    if len(header) > MAX_COLUMNS and len(body) <= MAX_ROWS_TO_TURN:
        first = header[0] if named else "field"
        turned_header = [first] + [
            str(row[0]) if named else f"#{i + 1}" for i, row in enumerate(body)
        ]
        fields = header[1:] if named else header
        offset = 1 if named else 0
        turned = [[f] + [row[j + offset] for row in body] for j, f in enumerate(fields)]
        text = table(turned_header, turned)
    else:
        text = table(header, body)
    if deep:
        text += f"\n\nIn the JSON, not shown here: {', '.join(code(d) for d in deep)}."
    return text


def is_record_map(value: Any) -> bool:
    """A non-empty mapping of mappings that share most of their fields (rows of one table)."""
    if not (
        isinstance(value, dict)
        and value
        and all(isinstance(v, dict) and v and not is_mean_std(v) for v in value.values())
    ):
        return False
    columns = [set(_columns(v)[0]) for v in value.values()]
    union = set().union(*columns)
    return len(union) <= 2 * sum(map(len, columns)) / len(columns)


def is_record_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def folded(title: str, value: Any) -> str:
    """``value`` as JSON, folded under ``title``."""
    body = fenced(json.dumps(value, indent=1, ensure_ascii=False), "json")
    return f'??? note "{cell(title)}"\n\n' + "\n".join(
        f"    {line}" if line else "" for line in body.splitlines()
    )


def section(key: str, value: Any, level: int) -> str:
    """The Markdown of one field of a result, under a heading of ``level``."""
    heading = "#" * min(level, 6) + " " + cell(key)
    found = as_cell(value, key)
    if found is not None:
        return f"{heading}\n\n{found}"
    if is_record_list(value):
        return f"{heading}\n\n" + records_table([("", r) for r in value], key)
    if isinstance(value, dict):
        scalars = {k: v for k, v in value.items() if as_cell(v, k) is not None}
        rest = {k: v for k, v in value.items() if k not in scalars}
        parts = [heading]
        if scalars:
            parts.append(
                table(["field", "value"], [(k, as_cell(v, k)) for k, v in scalars.items()])
            )
        if rest and is_record_map(rest):
            parts.append(records_table([(str(k), v) for k, v in rest.items()], key))
        elif level >= 4 or (rest and all(isinstance(v, dict) for v in rest.values())):
            parts += [folded(str(k), v) for k, v in rest.items()]
        else:
            parts += [section(str(k), v, level + 1) for k, v in rest.items()]
        return "\n\n".join(parts)
    return f"{heading}\n\n" + folded(key, value)


def _demote(report: str) -> str:
    return "\n".join("#" + line if line.startswith("#") else line for line in report.splitlines())


def lead(data: Any) -> str:
    """The sentence that says what the result measures (empty when no field says it)."""
    if isinstance(data, dict):
        for key in LEAD_KEYS:
            if isinstance(data.get(key), str):
                return str(data[key])
    return ""


def result_page(result: Result, scripts: dict[str, str]) -> Page:
    """The page of one result."""
    data = result.data
    parts = [f"# {result.name}"]
    text = lead(data)
    if text:
        parts.append(text)
    source = f"Generated from {code(f'benchmarks/results/{result.name}.json')}"
    script = scripts.get(result.name)
    parts.append(source + (f", written by {code(script)}." if script else "."))
    if result.report:
        parts.append(_demote(result.report))
    if not isinstance(data, dict):
        parts.append(section("result", data, 2))
        return Page(f"benchmarks/{result.name}.md", result.name, "\n\n".join(parts) + "\n")
    body = {k: v for k, v in data.items() if k != "machine" and not (text and data.get(k) == text)}
    settings = {k: v for k, v in body.items() if as_cell(v, k) is not None}
    if settings:
        rows = [(k, as_cell(v, k)) for k, v in settings.items()]
        parts.append("## Settings\n\n" + table(["field", "value"], rows))
    sections = [section(str(k), v, 2) for k, v in body.items() if k not in settings]
    parts += [s for s in sections if "??? note" not in s]  # tables first, folded JSON after
    parts += [s for s in sections if "??? note" in s]
    if "machine" in data:
        parts.append(machine_section(data["machine"]))
    return Page(f"benchmarks/{result.name}.md", result.name, "\n\n".join(parts) + "\n")


def machine_section(machine: Any) -> str:
    """The machine block: every field, nested mappings (``versions``) spread as ``key.sub``."""
    if not isinstance(machine, dict):
        return section("Machine", machine, 2)
    cells, deep = _columns(machine)
    text = "## Machine\n\n" + table(["field", "value"], list(cells.items()))
    return text + "".join("\n\n" + folded(d, machine[d]) for d in deep)


def load_results(folder: Path) -> list[Result]:
    """Every ``*.json`` of ``folder`` (a report ``NAME.md`` beside ``NAME.json`` goes with it;
    a report without a JSON is a result of its own)."""
    results = []
    for path in sorted(folder.glob("*.json")):
        report = path.with_suffix(".md")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            data = {"error": f"not readable as JSON: {err}"}
        text = report.read_text(encoding="utf-8") if report.is_file() else ""
        results.append(Result(path.stem, data, text))
    for report in sorted(folder.glob("*.md")):
        if not report.with_suffix(".json").is_file():
            results.append(Result(report.stem, {}, report.read_text(encoding="utf-8")))
    return results


def writers(bench_dir: Path, names: list[str]) -> dict[str, str]:
    """For each result name, the benchmark script that names its file, where one does."""
    found: dict[str, str] = {}
    scripts = sorted(bench_dir.glob("*.py"))
    texts = {s: s.read_text(encoding="utf-8") for s in scripts}
    for name in names:
        for script, text in texts.items():
            if f"{name}.json" in text or f'"{name}"' in text:
                found[name] = f"benchmarks/{script.name}"
                break
    return found


def _machine_fields(data: Any) -> tuple[str, str, str]:
    machine = data.get("machine") if isinstance(data, dict) else None
    if not isinstance(machine, dict):
        return "", "", ""
    load = machine.get("load_average_1m")
    cores = machine.get("cpu_count")
    threads = machine.get("torch_threads")
    return (
        str(machine.get("date", ""))[:10],
        f"{cores} cores, {threads} threads" if cores is not None else "",
        number(load) if isinstance(load, int | float) else "",
    )


def benchmark_pages(results_dir: Path, bench_dir: Path) -> list[Page]:
    """The overview page, then one page per result."""
    results = load_results(results_dir)
    scripts = writers(bench_dir, [r.name for r in results])
    rows = []
    for r in results:
        date, cpu, load = _machine_fields(r.data)
        rows.append((f"[{r.name}]({r.name}.md)", lead(r.data), date, cpu, load))
    index = (
        "# Benchmarks\n\n"
        "Scripts in `benchmarks/` run dmlkit and its peer (pytorch-metric-learning) side by side "
        "in one process on the same inputs and write their results to `benchmarks/results/`. "
        "These pages are generated from those files when the site is built; each page ends with "
        "the machine the result was measured on (CPU, cores, threads, load, versions).\n\n"
        + table(["result", "what", "date", "CPU", "load (1 min)"], rows)
        + "\n"
    )
    pages = [Page("benchmarks/index.md", "Overview", index)]
    return pages + [result_page(r, scripts) for r in results]
