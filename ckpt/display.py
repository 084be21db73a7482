"""Turning store entries and checkpoint headers into text for people and JSON for scripts."""

from __future__ import annotations

import re
import time

from .store import Entry

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


# C0 and C1 controls, DEL, and the Unicode characters that reorder or hide text
# (bidirectional overrides and isolates, line/paragraph separators): anything read
# from a checkpoint, a bundle or a file name could otherwise drive the terminal.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029"
                     "\u202a-\u202e\u2066-\u2069]")
_UNSAFE_BUT_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f"
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
    pattern = _UNSAFE_BUT_NEWLINE if newlines else _UNSAFE
    return pattern.sub(_escape, str(text))


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
    if not entry.error_summary:
        return ""
    exc = entry.error_summary.get("exception", {})
    message = " ".join(str(exc.get("message", "")).split())
    return f"{exc.get('type', '?')}: {message}" if message else str(exc.get("type", "?"))


def shorten(text: str, width: int) -> str:
    """One line of at most `width` characters, cut with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def entry_json(entry: Entry) -> dict[str, Any]:
    """The stable JSON schema of one listed checkpoint (see README)."""
    exception = None
    if entry.error_summary:
        exc = entry.error_summary.get("exception", {})
        exception = {"type": exc.get("type"), "message": exc.get("message")}
    return {
        "id": entry.id,
        "name": entry.name,
        "trigger": entry.trigger,
        "created": iso_time(entry.created),
        "function": entry.summary.get("function"),
        "exception": exception,
        "size": entry.size,
        "path": entry.call_path,
        "problem": entry.problem,
    }


def table(rows: list[list[str]]) -> list[str]:
    """Left-aligned columns, two spaces apart; the last column is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
        for row in rows
    ]


def listing(entries: list[Entry], now: float | None = None) -> list[str]:
    """The rows of `cdip info`, oldest first."""
    rows = [["ID", "NAME", "TRIGGER", "CREATED", "EXCEPTION", "FUNCTION", "SIZE"]]
    for entry in entries:
        rows.append([
            entry.id,
            shorten(entry.name, 40),
            "BROKEN" if entry.problem else entry.trigger,
            f"{local_time(entry.created)} ({age(entry.created, now)})",
            shorten(exception_text(entry), 50),
            shorten(str(entry.summary.get("function", "?")), 50),
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


def _value_rows(values: list[dict[str, Any]]) -> list[str]:
    if not values:
        return ["  (none)"]
    rows = []
    for value in values:
        shape = value.get("shape")
        if shape is not None:
            size = f"shape {tuple(shape)} {value.get('dtype', '')}".rstrip()
        elif "len" in value:
            size = f"len {value['len']}"
        else:
            size = ""
        note = f"  [unpicklable: {value['unpicklable']}]" if value.get("unpicklable") else ""
        rows.append(["  " + value["name"], value.get("type", "?"), size, value["repr"] + note])
    return table(rows)


def detail(entry: Entry) -> tuple[list[str], dict[str, Any]]:
    """`cdip info NAME`: the lines for people and the JSON object for scripts.

    Both parts are verified first: even headers are shown only from a checkpoint
    this user's key signed.
    """
    from . import drift
    from .fileformat import read_headers, verify_part
    from .keys import load_key

    key = load_key(create=False)
    for path in entry.paths:
        verify_part(path, key)
    summary, call_detail = read_headers(entry.call_path)
    error_detail: dict[str, Any] = {}
    if entry.error_path is not None:
        error_detail = read_headers(entry.error_path)[1]
    location = dict(call_detail.get("function", {}))
    if location.get("file"):
        cwd = call_detail.get("metadata", {}).get("cwd")
        location["file"] = drift.relocated(location["file"], cwd)
    status = source_status(location)
    lines = [
        f"id:        {entry.id}",
        f"name:      {entry.name}",
        f"trigger:   {entry.trigger}",
        f"created:   {local_time(entry.created)} ({age(entry.created)})",
        f"function:  {summary.get('function')}  ({location.get('file')}:{location.get('line')})",
        f"source:    {status}",
        f"size:      {human_size(entry.size)}",
        "",
        "arguments:",
        *_value_rows(call_detail.get("arguments", [])),
    ]
    if error_detail:
        exc = error_detail["exception"]
        lines += ["", f"exception: {exception_text(entry)}", "", exc["traceback"].rstrip()]
        frames = error_detail.get("frames", [])
        if frames:
            frame = frames[0]
            lines += ["", f"locals at the error ({frame['qualname']}, line {frame['line']}):"]
            lines += _value_rows(frame["locals"])
            if len(frames) > 1:
                lines.append(f"  (+ {len(frames) - 1} inner frame(s) saved; see --json)")
    changes = drift.source_changes(location, error_detail.get("module_source"))
    if changes:
        lines += ["", "source changes since capture:", *["  " + line for line in changes]]
    environment = drift.environment_changes(call_detail.get("metadata", {}), location)
    if environment:
        lines += ["", "environment changes since capture (against this interpreter):",
                  *["  " + line for line in environment]]
    lines += ["", "metadata:", *_metadata_rows(call_detail.get("metadata", {}))]
    error_detail.pop("module_source", None)
    data = {**entry_json(entry), "source": status, "location": location,
            "source_diff": changes, "environment_changes": environment,
            "arguments": call_detail.get("arguments", []),
            "metadata": call_detail.get("metadata", {}), **error_detail}
    return lines, data


def _metadata_rows(metadata: dict[str, Any]) -> list[str]:
    shown = ["host", "user", "pid", "python", "executable", "platform", "cwd", "argv",
             "git_commit", "git_dirty"]
    rows = [[f"  {key}", str(metadata.get(key))] for key in shown if key in metadata]
    packages = metadata.get("packages") or {}
    if packages:
        rows.append(["  packages", ", ".join(f"{k}=={v}" for k, v in sorted(packages.items()))])
    return table(rows) if rows else ["  (none)"]
