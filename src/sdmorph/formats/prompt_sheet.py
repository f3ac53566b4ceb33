"""Keep seeds in a song's prompt sheet without disturbing anything else in the file.

Artists edit `prompt_image_definitions.csv` by hand and in spreadsheets, so rewriting it
through a CSV writer would churn quoting, BOMs, line endings and stray columns. Instead the
raw text is tokenized with the exact span of every field, and only the one `seeds` cell
(or one appended row) is spliced in; every other byte stays as it was.
"""

from __future__ import annotations

import operator
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sdmorph.core.errors import Problem, SdmorphError
from sdmorph.formats.fsio import locked, write_bytes
from sdmorph.formats.seeds import EXPECTED_SEEDS, MAX_SEED, parse_seeds

BOM = b"\xef\xbb\xbf"
SEEDS_COLUMN = "seeds"
PROMPT_COLUMN = "prompt"
DEFAULT_DELIMITER = " "
_UNQUOTED = re.compile(r"[^,\r\n]*")
_SEPARATOR = re.compile(r"(?<=[0-9])[\s,]+(?=[0-9])")
_NEEDS_QUOTES = re.compile(r'[,"\r\n]')


@dataclass(frozen=True)
class KeepResult:
    """What `keep_seeds` did: seeds added, seeds that were already there, the backup."""

    added: tuple[int, ...]
    already_present: tuple[int, ...]
    backup: Path | None
    changed: bool
    new_prompt: bool = False


@dataclass(frozen=True)
class _Field:
    start: int  # span of the raw field text, quotes included
    end: int
    value: str
    quoted: bool


@dataclass(frozen=True)
class _Record:
    fields: tuple[_Field, ...]
    line: int  # 1-based line of the file where the record starts
    end: int  # just after the last field
    next: int  # just after the line terminator (== end at end of file)

    @property
    def blank(self) -> bool:
        return all(not f.value.strip() for f in self.fields)

    def value(self, index: int) -> str:
        return self.fields[index].value if index < len(self.fields) else ""


def keep_seeds(
    sheet_path: Path, prompt: str, seeds: Sequence[int], prompt_text: str | None = None
) -> KeepResult:
    """Add `seeds` to `prompt`'s seeds cell (or a new row if `prompt_text` is given).

    Seeds already in the cell are not added twice; if nothing changes the file is not
    written at all. Otherwise the old file is kept as `<sheet>.bak`. The whole
    read-modify-write holds a lock beside the sheet so concurrent writers never lose a seed.
    """
    sheet_path = Path(sheet_path)
    wanted = _check_seeds(seeds, sheet_path)
    if not sheet_path.is_file():
        raise SdmorphError(Problem("prompt sheet not found (expected a CSV file)", sheet_path))
    # Hidden: the lock file stays (removing it would race another writer), and the song's
    # folder is the artist's.
    with locked(sheet_path.with_name(f".{sheet_path.name}.lock")):
        old = _read(sheet_path)
        new, result = _edit(old, sheet_path, prompt, wanted, prompt_text)
        if new is None:
            return result
        backup = sheet_path.with_name(sheet_path.name + ".bak")
        write_bytes(backup, old)
        write_bytes(sheet_path, new)
    return KeepResult(result.added, result.already_present, backup, True, result.new_prompt)


def _check_seeds(seeds: Sequence[int], file: Path) -> list[int]:
    wanted: list[int] = []
    for seed in seeds:
        try:
            value = operator.index(seed)
        except TypeError:
            value = -1
        if isinstance(seed, bool) or not 0 <= value <= MAX_SEED:
            raise SdmorphError(Problem(f"cannot keep seed {seed!r}: {EXPECTED_SEEDS}", file))
        if value not in wanted:
            wanted.append(value)
    return wanted


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SdmorphError(Problem(f"cannot read the prompt sheet: {exc.strerror}", path)) from exc


def _edit(
    data: bytes, file: Path, prompt: str, wanted: list[int], prompt_text: str | None
) -> tuple[bytes | None, KeepResult]:
    """The new file bytes (None when unchanged) and what was done."""
    bom = BOM if data.startswith(BOM) else b""
    try:
        text = data[len(bom) :].decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = f"not UTF-8 text (bad byte at offset {exc.start + len(bom)}); save it as UTF-8"
        raise SdmorphError(Problem(msg, file)) from exc
    records = _tokenize(text, file)
    header, rows = _split_header(records, file)
    seeds_col = _column(header, SEEDS_COLUMN, file)
    row = _find_row(rows, prompt)
    if row is not None:
        new_text, added, present = _add_to_cell(text, row, seeds_col, wanted, rows, file)
        result = KeepResult(tuple(added), tuple(present), None, False)
        if new_text is None:
            return None, result
        return bom + new_text.encode("utf-8"), result
    if prompt_text is None:
        msg = f"prompt {prompt!r} is not in the sheet (its first column names the prompts)"
        raise SdmorphError(Problem(msg, file))
    new_text = _append_row(text, header, rows, file, (prompt, prompt_text, wanted))
    result = KeepResult(tuple(wanted), (), None, False, new_prompt=True)
    return bom + new_text.encode("utf-8"), result


def _tokenize(text: str, file: Path) -> list[_Record]:
    """Split CSV text into records whose fields carry their exact spans in `text`."""
    records: list[_Record] = []
    pos, line = 0, 1
    while pos < len(text):
        start_line = line
        fields: list[_Field] = []
        while True:
            field = _read_field(text, pos, line, file)
            fields.append(field)
            line += text.count("\n", field.start, field.end)
            pos = field.end
            if pos < len(text) and text[pos] == ",":
                pos += 1
                continue
            break
        end = pos
        if text.startswith("\r\n", pos):
            pos += 2
        elif pos < len(text):
            pos += 1
        line += 1
        records.append(_Record(tuple(fields), start_line, end, pos))
    return records


def _read_field(text: str, pos: int, line: int, file: Path) -> _Field:
    if not text.startswith('"', pos):
        end = _UNQUOTED.match(text, pos).end()  # type: ignore[union-attr]
        return _Field(pos, end, text[pos:end], quoted=False)
    parts: list[str] = []
    i = pos + 1
    while True:
        close = text.find('"', i)
        if close < 0:
            msg = "a quoted field never ends (a '\"' is missing)"
            raise SdmorphError(Problem(msg, file, row=line))
        parts.append(text[i:close])
        if text.startswith('""', close):
            parts.append('"')
            i = close + 2
            continue
        break
    # Like Python's csv module, keep stray text after the closing quote rather than fail.
    end = _UNQUOTED.match(text, close + 1).end()  # type: ignore[union-attr]
    parts.append(text[close + 1 : end])
    return _Field(pos, end, "".join(parts), quoted=True)


def _split_header(records: list[_Record], file: Path) -> tuple[_Record, list[_Record]]:
    filled = [r for r in records if not r.blank]
    if not filled:
        raise SdmorphError(Problem("the prompt sheet is empty (no header row)", file))
    return filled[0], filled[1:]


def _column(header: _Record, name: str, file: Path) -> int:
    for index, field in enumerate(header.fields):
        if field.value.strip().lower() == name:
            return index
    found = ", ".join(repr(f.value) for f in header.fields)
    msg = f"no '{name}' column in the header (columns: {found})"
    raise SdmorphError(Problem(msg, file, row=header.line))


def _find_row(rows: list[_Record], prompt: str) -> _Record | None:
    """The first row naming `prompt` (the one the song uses when names repeat)."""
    for row in rows:
        if row.value(0) == prompt:
            return row
    for row in rows:
        if prompt.strip() and row.value(0).strip() == prompt.strip():
            return row
    return None


def _parse_seeds(value: str, file: Path, row: int) -> list[int]:
    seeds, bad = parse_seeds(value)
    if bad:
        msg = f"seed {bad[0]!r} is not a whole number; {EXPECTED_SEEDS}"
        raise SdmorphError(Problem(msg, file, row=row, column=SEEDS_COLUMN))
    return seeds


def _delimiter_of(value: str) -> str | None:
    """The separator most used between the seeds of one cell (None with < 2 seeds)."""
    kinds = Counter(_normalise_separator(s) for s in _SEPARATOR.findall(value))
    return kinds.most_common(1)[0][0] if kinds else None


def _normalise_separator(sep: str) -> str:
    if "," not in sep:
        return " "
    return ", " if len(sep) > 1 else ","


def _file_delimiter(rows: list[_Record], seeds_col: int) -> str:
    votes = Counter(d for r in rows if (d := _delimiter_of(r.value(seeds_col))) is not None)
    return votes.most_common(1)[0][0] if votes else DEFAULT_DELIMITER


def _quote(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def _add_to_cell(
    text: str, row: _Record, col: int, wanted: list[int], rows: list[_Record], file: Path
) -> tuple[str | None, list[int], list[int]]:
    value = row.value(col)
    existing = set(_parse_seeds(value, file, row.line))
    present = [s for s in wanted if s in existing]
    added = [s for s in wanted if s not in existing]
    if not added:
        return None, added, present
    delim = _delimiter_of(value) or _file_delimiter(rows, col)
    base = value.rstrip(" \t,")
    new_value = delim.join(([base] if base.strip() else []) + [str(s) for s in added])
    if col < len(row.fields):
        field = row.fields[col]
        cell = _quote(new_value) if field.quoted or "," in new_value else new_value
        return text[: field.start] + cell + text[field.end :], added, present
    # The row stops before the seeds column: pad it with the missing empty cells.
    cell = _quote(new_value) if "," in new_value else new_value
    pad = "," * (col - len(row.fields) + 1)
    return text[: row.end] + pad + cell + text[row.end :], added, present


def _append_row(
    text: str,
    header: _Record,
    rows: list[_Record],
    file: Path,
    entry: tuple[str, str, list[int]],
) -> str:
    """`text` with a new row (name, prompt text, seeds) after the last non-empty row."""
    name, prompt_text, seeds = entry
    if not name.strip():
        raise SdmorphError(Problem("cannot add a prompt with an empty name", file))
    seeds_col = _column(header, SEEDS_COLUMN, file)
    prompt_col = _column(header, PROMPT_COLUMN, file)
    values = [""] * max(len(header.fields), seeds_col + 1, prompt_col + 1)
    values[0] = name
    values[prompt_col] = prompt_text
    values[seeds_col] = _file_delimiter(rows, seeds_col).join(str(s) for s in seeds)
    line = ",".join(_render_new(v, i, header, rows) for i, v in enumerate(values))
    last = rows[-1] if rows else header
    newline = _line_ending(text, header, rows)
    if last.next == last.end:  # the file ends without a newline: keep it that way
        return text[: last.end] + newline + line + text[last.end :]
    return text[: last.next] + line + newline + text[last.next :]


def _render_new(value: str, col: int, header: _Record, rows: list[_Record]) -> str:
    """Quote a new cell the way the file quotes that column (else only when needed)."""
    sample = [r.fields[col] for r in (rows or [header]) if col < len(r.fields)]
    filled = [f for f in sample if f.value]
    everything = [f for r in [header, *rows] for f in r.fields]
    quote_all = bool(everything) and all(f.quoted for f in everything)
    column_quoted = bool(filled) and all(f.quoted for f in filled)
    if _NEEDS_QUOTES.search(value) or quote_all or (value and column_quoted):
        return _quote(value)
    return value


def _line_ending(text: str, header: _Record, rows: list[_Record]) -> str:
    for record in [header, *rows]:
        if record.next > record.end:
            return text[record.end : record.next]
    return "\n"
