"""Quoted fields that never close, found in the raw text of a CSV file before a CSV reader sees it.

A reader that allows line breaks inside quoted fields (the caption-contest files have real two-line captions) reads
everything after an unbalanced quote as one field until the next quote: one broken row silently swallows the rows after
it, and a file truncated inside a quoted field ends in a fragment that looks like a complete row. `scan_quotes` finds
the physical lines where a quoted field opens without closing and decides, line by line, between

- a genuine multi-line field: the quote closes on a later line and none of the lines in between looks like a data row
  (counted in `continuation_lines`, left to the reader);
- an unbalanced quote: a later line inside the would-be field looks like a data row of its own, so the quote is a
  typo; only the opening line is removed (`unbalanced_quote`) and the lines after it are read as rows again;
- an unterminated quote: the file ends inside the field (a truncated file); the opening line and the rest of the file
  are removed (`unterminated_quote`).

`physical_lines` lets the caller cross-check the reader's row count against the raw line count, so that no row can
disappear inside a field uncounted.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

_QUOTE, _NEWLINE = ord('"'), ord("\n")


@dataclass
class QuoteScan:
    """What `scan_quotes` found in the data lines of a CSV text (the header excluded).

    Attributes:
        text: the text to parse: the original one, or a copy without the lines of `bad_rows`.
        physical_lines: data lines of the original text.
        continuation_lines: lines that continue a genuine multi-line quoted field (they belong to the row above).
        removed_lines: lines taken out of `text` (each bad row's opening line and, when unterminated, what follows).
        bad_rows: `(line number in the file, reason, line text)` of every removed row; line 1 is the header.
    """

    text: str
    physical_lines: int
    continuation_lines: int = 0
    removed_lines: int = 0
    bad_rows: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def expected_rows(self) -> int:
        """Rows a CSV reader must return for `text` (blank lines included): the consistency check of the caller."""
        return self.physical_lines - self.continuation_lines - self.removed_lines


def ends_inside_quotes(line: str, inside: bool = False) -> bool:
    """Whether a quoted field is still open at the end of `line` (comma-separated, `""` escapes a quote), starting
    inside one when `inside`. A quote opens a field only at the field's start, as CSV readers treat it.

    Example:

    ```python
    >>> ends_inside_quotes('1,"a, b"'), ends_inside_quotes('1,"a ""b'), ends_inside_quotes('1,a "b')
    (False, True, False)
    ```
    """
    field_start = not inside
    position = 0
    while position < len(line):
        char = line[position]
        if inside:
            if char == '"':
                if line[position + 1 : position + 2] == '"':
                    position += 2
                    continue
                inside = False
        elif char == '"' and field_start:
            inside = True
        field_start = not inside and char == ","
        position += 1
    return inside


def scan_quotes(text: str, looks_like_row: Callable[[str], bool]) -> QuoteScan:
    """Scan the data lines of `text` (line breaks already normalised to `\\n`; the first line is the header) for
    quoted fields that do not close on their line; `looks_like_row(line)` tells whether a line parses as a complete
    data row on its own. See the module docstring for the three outcomes.

    Example:

    ```python
    >>> text = 'a,b\\n1,"broken\\n2,fine\\n3,"two\\nlines"\\n'
    >>> scan = scan_quotes(text, lambda line: line[:1].isdigit() and line.count(",") == 1)
    >>> scan.bad_rows, scan.continuation_lines, scan.expected_rows
    ([(2, 'unbalanced_quote', '1,"broken')], 1, 2)
    ```
    """
    header_end = text.find("\n")
    body = "" if header_end == -1 else text[header_end + 1 :]
    lines = body.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final line break ends the last line; it does not start an empty one
    scan = QuoteScan(text=text, physical_lines=len(lines))
    removed: list[int] = []
    resume = 0
    for index in _odd_quote_lines(body, len(lines)):
        if index < resume or not ends_inside_quotes(lines[index]):
            continue
        end, row_inside = _follow_field(lines, index, looks_like_row)
        if row_inside:
            scan.bad_rows.append((index + 2, "unbalanced_quote", lines[index]))
            removed.append(index)
            resume = index + 1
        elif end == len(lines):
            scan.bad_rows.append((index + 2, "unterminated_quote", "\n".join(lines[index:])))
            removed.extend(range(index, len(lines)))
            resume = len(lines)
        else:
            scan.continuation_lines += end - index
            resume = end + 1
    if removed:
        scan.removed_lines = len(removed)
        kept = np.ones(len(lines), dtype=bool)
        kept[removed] = False
        body = "".join(line + "\n" for line, keep in zip(lines, kept, strict=True) if keep)
        scan.text = text[: header_end + 1] + body
    return scan


def _odd_quote_lines(body: str, num_lines: int) -> np.ndarray:
    """Indices of the lines with an odd number of quote characters, the only ones that can leave a field open (a
    closed quoted field and each escaped quote contribute two). Vectorised: the files hold ~570k lines."""
    data = np.frombuffer(body.encode("utf-8"), dtype=np.uint8)  # '"' and '\n' are single bytes in UTF-8
    newlines = np.flatnonzero(data == _NEWLINE)
    line_of_quote = np.searchsorted(newlines, np.flatnonzero(data == _QUOTE))
    counts = np.bincount(line_of_quote, minlength=num_lines)[:num_lines]
    return np.flatnonzero(counts % 2 == 1)


def _follow_field(lines: list[str], start: int, looks_like_row) -> tuple[int, bool]:
    """From a line whose quoted field stays open: the line where the field closes (`len(lines)` when it never does),
    and whether a line on the way looks like a data row (then the quote was unbalanced)."""
    for index in range(start + 1, len(lines)):
        if looks_like_row(lines[index]):
            return index, True
        if not ends_inside_quotes(lines[index], inside=True):
            return index, False
    return len(lines), False
