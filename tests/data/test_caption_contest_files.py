"""Reading one caption-contest summary file: malformed rows counted by reason (or raised), unknown headers, empty
files, contest-id mismatches and undecodable bytes; on copies of real files: an unbalanced quote that would swallow
the rows after it, a file truncated inside a quoted caption, and missing stored totals."""

import csv
import logging

import pytest

from trl_anchor.data.caption_contest_files import CaptionContestFormatError, read_summary_file

HEADER = "rank,caption,mean,precision,votes,not_funny,somewhat_funny,funny\n"


def _write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def test_bad_rows_are_counted_with_reasons(tmp_path, caplog):
    text = HEADER + (
        "0,Good one,2.0,0.5,3,1,1,1\n"
        "1,Too few fields,2.0\n"  # malformed
        "2,NaN counts,1.0,0.1,3,nan,1,2\n"  # invalid counts
        "3,Negative,1.0,0.1,1,-1,1,1\n"
        "4,Fractional,1.0,0.1,3,1.5,0.5,1\n"
        "5,Wrong total,1.0,0.1,9,1,1,1\n"
        "6,No votes,0,0,0,0,0,0\n"
        "7,One vote,3,0,1,0,0,1\n"
        "8,   ,1.0,0.1,2,2,0,0\n"  # empty caption
        "\n"  # blank line
        '9,"Good   one ",1.5,0.3,2,1,0,1\n'  # duplicate up to whitespace: merged
    )
    with caplog.at_level(logging.WARNING, logger="trl_anchor.data"):
        table = read_summary_file(_write(tmp_path, "700_summary_X.csv", text), min_votes=2)
    report = table.report
    assert table.captions == ["Good one"] and table.counts.tolist() == [[2, 1, 2]]
    assert dict(report.dropped) == {
        "malformed_row": 1,
        "invalid_counts": 3,
        "inconsistent_total": 1,
        "zero_votes": 1,
        "too_few_votes": 1,
        "empty_caption": 1,
        "blank_line": 1,
    }
    assert report.merged == 1 and report.kept == 1 and report.total == 11
    assert "700_summary_X.csv" in caplog.text and "malformed_row" in caplog.text


@pytest.mark.parametrize(
    "row, message",
    [
        ("1,Too few fields,2.0\n", r"row '1,Too few fields,2.0': malformed row: 3 fields"),
        (
            "2,NaN counts,1.0,0.1,3,nan,1,2\n",
            r"row 2: invalid counts: vote counts unfunny=nan, somewhat_funny=1, funny=2",
        ),
        ("2,Junk counts,1.0,0.1,3,x,1,2\n", r"invalid counts: vote counts unfunny='x'"),
        ("5,Wrong total,1.0,0.1,9,1,1,1\n", r"inconsistent total: stored total 9 ≠ sum of the counts 3"),
    ],
)
def test_bad_rows_raise_when_asked(tmp_path, row, message):
    path = _write(tmp_path, "701_summary_X.csv", HEADER + "0,Fine,2.0,0.5,3,1,1,1\n" + row)
    with pytest.raises(CaptionContestFormatError, match=message) as error:
        read_summary_file(path, on_bad_rows="raise", min_votes=2)
    assert "701_summary_X.csv" in str(error.value)


def test_unknown_header_and_empty_file_raise(tmp_path):
    with pytest.raises(CaptionContestFormatError, match=r"unknown column\(s\) \['laughs'\]"):
        read_summary_file(_write(tmp_path, "702_a.csv", "caption,unfunny,somewhat_funny,funny,laughs\nx,1,1,1,2\n"))
    with pytest.raises(CaptionContestFormatError, match=r"no column for \['funny'\]"):
        read_summary_file(_write(tmp_path, "702_b.csv", "caption,unfunny,somewhat_funny\nx,1,1\n"))
    with pytest.raises(CaptionContestFormatError, match="empty"):
        read_summary_file(_write(tmp_path, "702_c.csv", ""))
    with pytest.raises(CaptionContestFormatError, match="which contest"):
        read_summary_file(_write(tmp_path, "summary.csv", "caption,unfunny,somewhat_funny,funny\nx,1,1,1\n"))


def test_contest_column_mismatch_and_undecodable_bytes(tmp_path):
    header = "rank,funny,somewhat_funny,unfunny,count,score,precision,contest,caption\n"
    table = read_summary_file(
        _write(tmp_path, "703_summary.csv", header + "1,1,1,1,3,2.0,0.5,703,Ok\n2,1,1,1,3,2.0,0.5,999,Elsewhere\n"),
        min_votes=2,
    )
    assert table.captions == ["Ok"] and table.report.dropped["contest_mismatch"] == 1
    raw = b"caption,unfunny,somewhat_funny,funny\nfine,1,1,1\nbad \xff byte,1,1,1\n"
    table = read_summary_file(_write(tmp_path, "704_summary.csv", raw), min_votes=2)
    assert table.captions == ["fine"] and table.report.dropped["undecodable_text"] == 1


# ------------------------------------------------------------------------------------- copies of real files
MULTILINE = "642_summary_KLUCB.csv"  # a real file with two-line quoted captions


def _real_rows(path):
    """Header and rows of a real summary file read with the csv module alone (no loader code)."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def _write_rows(path, header, rows, lines_after=None):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows([header, *rows])
    return path


def test_real_two_line_captions_are_kept_and_the_row_count_matches(tmp_path, caption_data_dir):
    header, rows = _real_rows(caption_data_dir / "summaries" / MULTILINE)
    multiline = [row for row in rows if "\n" in row[-1]]
    assert len(multiline) > 50  # the file's own two-line captions
    table = read_summary_file(caption_data_dir / "summaries" / MULTILINE, min_votes=2)
    empty = sum(not row[-1].strip() for row in rows)
    assert table.report.total == len(rows) and dict(table.report.dropped) == {"empty_caption": empty}
    assert " ".join(multiline[0][-1].split()) in table.captions


def test_an_unbalanced_quote_does_not_swallow_the_rows_after_it(tmp_path, caption_data_dir):
    header, rows = _real_rows(caption_data_dir / "summaries" / MULTILINE)
    rows = rows[:400]
    path = _write_rows(tmp_path / MULTILINE, header, rows)
    lines = path.read_text(encoding="utf-8").split("\n")
    broken = next(k for k in range(100, len(lines)) if lines[k].endswith('"') and lines[k].count('"') == 2)
    lines[broken] = lines[broken][:-1]  # drop the closing quote: the caption now runs into the next rows
    path.write_text("\n".join(lines), encoding="utf-8")
    broken_row = next(csv.reader([lines[broken] + '"']))

    table = read_summary_file(path, min_votes=2)
    report = table.report
    assert report.dropped == {"unbalanced_quote": 1}
    assert report.total == len(rows)  # every raw row accounted for: nothing swallowed uncounted
    reference = read_summary_file(caption_data_dir / "summaries" / MULTILINE, min_votes=2)
    counts = dict(zip(reference.captions, reference.counts.tolist(), strict=True))
    expected = {" ".join(row[-1].split()) for row in rows} - {" ".join(broken_row[-1].split())}
    assert set(table.captions) == expected
    assert all(counts[c] == n for c, n in zip(table.captions, table.counts.tolist(), strict=True))
    with pytest.raises(CaptionContestFormatError, match=rf"line {broken + 1} .*unbalanced quote"):
        read_summary_file(path, min_votes=2, on_bad_rows="raise")


def test_a_file_truncated_inside_a_quoted_caption_drops_the_fragment(tmp_path, caption_data_dir):
    header, rows = _real_rows(caption_data_dir / "summaries" / MULTILINE)
    rows = rows[:300]
    path = _write_rows(tmp_path / MULTILINE, header, rows)
    text = path.read_text(encoding="utf-8")
    last = rows[-1]
    quoted = next(k for k in range(len(rows) - 1, 0, -1) if "," in rows[k][-1])  # csv quotes captions with commas
    cut = text.index(rows[quoted][-1]) + len(rows[quoted][-1]) // 2  # the download stopped mid-caption
    path.write_text(text[:cut], encoding="utf-8")
    fragment = " ".join(rows[quoted][-1][: len(rows[quoted][-1]) // 2].split())

    table = read_summary_file(path, min_votes=2)
    assert table.report.dropped == {"unterminated_quote": 1}
    assert fragment not in table.captions and " ".join(last[-1].split()) not in table.captions
    assert table.report.total == quoted + 1
    with pytest.raises(CaptionContestFormatError, match="unterminated quote: the file ends inside"):
        read_summary_file(path, min_votes=2, on_bad_rows="raise")


def test_a_missing_stored_total_keeps_a_row_whose_counts_are_valid(tmp_path, caption_data_dir):
    header, rows = _real_rows(caption_data_dir / "summaries" / "538_summary_LilUCB.csv")
    rows = rows[:50]
    total = header.index("count")
    for row in rows[:7]:
        row[total] = ""
    rows[7][total] = str(int(rows[7][total]) + 1)  # a wrong total is still an error
    table = read_summary_file(_write_rows(tmp_path / "538_summary_LilUCB.csv", header, rows), min_votes=2)
    assert table.report.adjusted["missing_stored_total"] == 7
    assert table.report.dropped == {"inconsistent_total": 1}
    assert {" ".join(row[-1].split()) for row in rows[:7]} <= set(table.captions)
