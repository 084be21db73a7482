"""Turning store entries and checkpoint headers into text for people and JSON for scripts."""

from __future__ import annotations

import re
import sys
import time

from .store import Entry
from .workers import describe, label, worker_of

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .header import ValueInfo


# C0 and C1 controls, DEL, and the Unicode characters that reorder or hide text
# (bidirectional overrides and isolates, line/paragraph separators): anything read
# from a checkpoint, a bundle or a file name could otherwise drive the terminal.
# Compiled on first use (~0.5 ms each): most text is printable and never needs them.
_UNSAFE = ("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029"
           "\u202a-\u202e\u2066-\u2069]")
_UNSAFE_BUT_NEWLINE = ("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f"
                       "\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, newlines: bool = False) -> str:
    r"""`text` with every control character escaped (``\x1b``, ``\u202e``).

    For any string that came from a checkpoint, a bundle or a file name: shown
    raw, escape sequences in it would drive the user's terminal (fake rows,
    hidden text, a changed title). With `newlines`, line breaks are kept.
    """
    text = str(text)
    if text.isprintable():  # no control, format or separator character: nothing to escape
        return text  # (listing asks ~4 times per checkpoint; the regex costs more)
    pattern = re.compile(_UNSAFE_BUT_NEWLINE if newlines else _UNSAFE)  # re caches it
    return pattern.sub(_escape, text)


def human_size(size: int) -> str:
    """1536 -> '1.5 KiB'."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def age(created: float, now: float | None = None) -> str:
    """How long ago, coarsely: '12s ago', '3m ago', '2h ago', '5d ago'."""
    seconds = int(max((now if now is not None else time.time()) - created, 0))
    if seconds < 60:
        return f"{seconds}s ago"
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    if seconds < 86400:
        return f"{seconds // 3600}h ago"
    return f"{seconds // 86400}d ago"


def local_time(created: float) -> str:
    """'2026-11-24 16:30:05' in local time."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created))


def iso_time(created: float) -> str:
    """ISO 8601 in UTC, for JSON."""
    import datetime  # only for --json: listing for people does without it

    return datetime.datetime.fromtimestamp(created, datetime.timezone.utc).isoformat()


def exception_text(entry: Entry) -> str:
    """'ValueError: bad value' or '' (the problem, for a broken entry)."""
    if entry.problem:
        return entry.problem
    if entry.error_summary is None or entry.error_summary.exception is None:
        return ""
    exc = entry.error_summary.exception
    message = " ".join(exc.message.split())
    return f"{exc.type}: {message}" if message else exc.type


def ellipsis() -> str:
    """"…", or "..." where standard output cannot encode it (``PYTHONIOENCODING=ascii``)."""
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "…".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return "..."
    return "…"


def shorten(text: str, width: int) -> str:
    """One line of at most `width` characters, cut with an ellipsis, controls escaped."""
    text = printable(" ".join(str(text).split()))
    if len(text) <= width:
        return text
    cut = ellipsis()
    return text[: width - len(cut)] + cut


def shorten_middle(text: str, width: int) -> str:
    """`shorten`, cut in the middle: a test's node id keeps its file and its test name."""
    text = printable(" ".join(str(text).split()))
    if len(text) <= width:
        return text
    cut = ellipsis()
    head = (width - len(cut)) // 3
    return text[:head] + cut + text[len(text) - (width - len(cut) - head):]


def entry_json(entry: Entry) -> dict[str, Any]:
    """The stable JSON schema of one listed checkpoint (see README)."""
    exception = None
    if entry.error_summary is not None and entry.error_summary.exception is not None:
        exc = entry.error_summary.exception
        exception = {"type": exc.type, "message": exc.message}
    worker = worker_of(entry)
    return {
        "id": entry.id,
        "name": entry.name,
        "trigger": entry.trigger,
        "created": iso_time(entry.created),
        "function": entry.function if entry.summary is not None else None,
        "exception": exception,
        "size": entry.size,
        "path": entry.call_path,
        "problem": entry.problem,
        "worker": worker.to_json() if worker is not None else None,
    }


def table(rows: list[list[str]]) -> list[str]:
    """Left-aligned columns, two spaces apart; the last column is not padded."""
    widths = [max(map(len, column)) for column in zip(*rows)]
    # one format for every row: 10,000 rows would otherwise join 80,000 padded cells
    line = "  ".join(f"{{:<{width}}}" for width in widths)
    return [line.format(*row).rstrip() for row in rows]


def listing(entries: list[Entry], now: float | None = None) -> list[str]:
    """The rows of `cdip info`, oldest first (a WORKER column when any came from a cluster)."""
    workers = [label(worker_of(entry)) for entry in entries]
    shown = any(workers)
    rows = [["ID", "NAME", *(["WORKER"] if shown else []), "TRIGGER", "CREATED", "EXCEPTION",
             "FUNCTION", "SIZE"]]
    for entry, worker in zip(entries, workers):
        rows.append([
            printable(entry.id),
            shorten_middle(entry.name, 72),
            *([shorten(worker, 30)] if shown else []),
            "BROKEN" if entry.problem else entry.trigger,
            f"{local_time(entry.created)} ({age(entry.created, now)})",
            shorten(exception_text(entry), 50),
            shorten(entry.function, 50),
            human_size(entry.size),
        ])
    return table(rows)


def source_status(location: dict[str, Any]) -> str:
    """Whether the function's source changed since capture, read without importing it."""
    from .source import current_source_hash

    recorded = location.get("source_hash")
    filename = location.get("file")
    if not recorded or not filename:
        return "unknown (no source file at capture)"
    now = current_source_hash(location)
    if now is None:
        return f"not found in {filename} (renamed or deleted since?)"
    return "unchanged since capture" if now == recorded else "changed since capture"


def _size(value: ValueInfo) -> str:
    """'shape (2, 3) torch.float32 on cuda:0', '1,234 parameters on cpu', 'len 4' or ''."""
    device = f" on {value.device}" if value.device else ""
    if value.shape is not None:
        grad = ", requires grad" if value.requires_grad else ""
        return shorten(f"shape {tuple(value.shape)} {value.dtype or ''}".rstrip() + device
                       + grad, 80)
    if value.parameters is not None:  # a torch module
        return shorten(f"{value.parameters:,} parameters{device}", 80)
    return f"len {value.len}" if value.len is not None else ""


def _columns_line(value: ValueInfo) -> str | None:
    """'    columns: height float64, name str, ...' for a data frame, else None."""
    if not value.columns:
        return None
    shown = ", ".join(f"{column['name']} {column['dtype']}" for column in value.columns)
    more = value.shape[1] - len(value.columns) if value.shape and len(value.shape) == 2 else 0
    return "    " + shorten(f"columns: {shown}" + (f" (+{more} more)" if more > 0 else ""), 200)


def _value_rows(values: tuple[ValueInfo, ...]) -> list[str]:
    if not values:
        return ["  (none)"]
    rows = []
    for value in values:
        note = f"  [unpicklable: {value.unpicklable}]" if value.unpicklable else ""
        rows.append(["  " + shorten(value.name, 40), shorten(value.type, 60), _size(value),
                     shorten(value.repr + note, 200)])
    lines = []
    for value, line in zip(values, table(rows)):  # a frame's columns under its own row
        lines += [line, *filter(None, [_columns_line(value)])]
    return lines


def detail(entry: Entry) -> tuple[list[str], dict[str, Any]]:
    """`cdip info NAME`: the lines for people and the JSON object for scripts.

    Both parts are verified whole first: even headers are shown only from a
    checkpoint this user's key signed. Every string from them is shown escaped.
    """
    from . import drift
    from .fileformat import read_headers
    from .header import CallDetail, ErrorDetail
    from .keys import load_key

    key = load_key(create=False)
    call = CallDetail.from_json(read_headers(entry.call_path, key, whole=True)[1])
    error = None
    if entry.error_path is not None:
        error = ErrorDetail.from_json(read_headers(entry.error_path, key, whole=True)[1])
    location = call.location._asdict()
    if location.get("file"):
        location["file"] = drift.relocated(location["file"], call.metadata.get("cwd"))
    status = source_status(location)
    worker = worker_of(entry)
    lines = [
        f"id:        {entry.id}",
        f"name:      {entry.name}",
        f"trigger:   {entry.trigger}",
        f"created:   {local_time(entry.created)} ({age(entry.created)})",
        *([f"worker:    {describe(worker)}"] if worker is not None else []),
        f"function:  {entry.function}  ({location.get('file')}:{location.get('line')})",
        f"source:    {status}",
        f"size:      {human_size(entry.size)}",
        "",
        "arguments:",
        *_value_rows(call.arguments),
    ]
    if error is not None:
        lines += ["", f"exception: {exception_text(entry)}", "",
                  error.exception.traceback.rstrip()]
        if error.frames:
            frame = error.frames[0]
            lines += ["", f"locals at the error ({frame.qualname}, line {frame.line}):"]
            lines += _value_rows(frame.locals)
            if len(error.frames) > 1:
                lines.append(f"  (+ {len(error.frames) - 1} inner frame(s) saved; see --json)")
    changes = drift.source_changes(location, error.module_source if error else None)
    if changes:
        lines += ["", "source changes since capture:", *["  " + line for line in changes]]
    environment = drift.environment_changes(call.metadata, location)
    if environment:
        lines += ["", "environment changes since capture (against this interpreter):",
                  *["  " + line for line in environment]]
    lines += ["", "metadata:", *_metadata_rows(call.metadata)]
    error_json = error.to_json() if error is not None else {}
    error_json.pop("module_source", None)
    data = {**entry_json(entry), "source": status, "location": location,
            "source_diff": changes, "environment_changes": environment,
            "arguments": [argument.to_json() for argument in call.arguments],
            "metadata": call.metadata, **error_json}
    return [printable(line, newlines=True) for line in lines], data


def _metadata_rows(metadata: dict[str, Any]) -> list[str]:
    shown = ["host", "user", "pid", "python", "executable", "platform", "cwd", "argv",
             "git_commit", "git_dirty"]
    rows = [[f"  {key}", str(metadata.get(key))] for key in shown if key in metadata]
    packages = metadata.get("packages") or {}
    if packages:
        rows.append(["  packages", ", ".join(f"{k}=={v}" for k, v in sorted(packages.items()))])
    return table(rows) if rows else ["  (none)"]
