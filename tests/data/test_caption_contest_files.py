"""Reading one caption-contest summary file: malformed rows counted by reason (or raised), unknown headers, empty
files, contest-id mismatches and undecodable bytes."""

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
        table = read_summary_file(_write(tmp_path, "700_summary_X.csv", text))
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
        read_summary_file(path, on_bad_rows="raise")
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
        _write(tmp_path, "703_summary.csv", header + "1,1,1,1,3,2.0,0.5,703,Ok\n2,1,1,1,3,2.0,0.5,999,Elsewhere\n")
    )
    assert table.captions == ["Ok"] and table.report.dropped["contest_mismatch"] == 1
    raw = b"caption,unfunny,somewhat_funny,funny\nfine,1,1,1\nbad \xff byte,1,1,1\n"
    table = read_summary_file(_write(tmp_path, "704_summary.csv", raw))
    assert table.captions == ["fine"] and table.report.dropped["undecodable_text"] == 1
