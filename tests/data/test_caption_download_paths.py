"""`download_caption_contest` never writes outside its target folder, whatever names the listing returns (issue 12)."""

import json

import pytest

from trl_anchor.data.caption_contest import download_caption_contest


@pytest.mark.parametrize(
    "name", ["708_summary_/../../escaped.csv", "708_summary_x/../../../escaped.csv", "708_summary_a\\..\\escaped.csv"]
)
def test_listing_names_with_directories_are_refused(tmp_path, name):
    source = tmp_path / "source.csv"
    source.write_text("rank,caption,mean,precision,count,funny,somewhat_funny,unfunny\n0,A,2.0,0.5,3,1,1,1\n")
    listing = tmp_path / "listing.json"
    listing.write_text(json.dumps([{"name": name, "download_url": source.as_uri()}]))
    with pytest.raises(ValueError, match="outside"):
        download_caption_contest(tmp_path / "deep" / "cache", listing_url=listing.as_uri())
    written = {p.name for p in tmp_path.rglob("*") if p.is_file()}
    assert written == {"source.csv", "listing.json"}
