"""Preference data sets with soft labels and anchors, in `AnchorGaussianRewardTrainer`'s column spec.

One adapter per source; every loader returns a `datasets.Dataset` (or a `DatasetDict` of splits) with `prompt`,
`chosen`, `rejected`, `soft_label` = P(chosen ≻ rejected) ≥ 0.5 and, where the source has them, anchor columns.
"""

from ._common import FilterReport, check_no_group_overlap, plain_text, soft_label_from_votes, split_by_group
from .caption_contest import (
    CaptionContestData,
    check_contest_overlap,
    download_caption_contest,
    load_caption_contest,
    pairwise_soft_labels,
    sample_pairs,
    split_by_contest,
)
from .caption_contest_files import (
    DEFAULT_MIN_VOTES,
    CaptionContestFormatError,
    ContestTable,
    read_summary_file,
    separation_se,
    vote_statistics,
)
from .caption_contest_sources import SourceCheck, check_sources, read_descriptions, split_contests
from .helpsteer2 import load_helpsteer2, load_helpsteer2_ratings, parse_helpsteer2_prompt
from .helpsteer3 import load_helpsteer3
from .multipref import load_multipref
from .personal_llm import load_personal_llm

__all__ = [
    "DEFAULT_MIN_VOTES",
    "CaptionContestData",
    "CaptionContestFormatError",
    "ContestTable",
    "FilterReport",
    "SourceCheck",
    "check_contest_overlap",
    "check_sources",
    "check_no_group_overlap",
    "download_caption_contest",
    "load_caption_contest",
    "load_helpsteer2",
    "load_helpsteer2_ratings",
    "load_helpsteer3",
    "load_multipref",
    "load_personal_llm",
    "pairwise_soft_labels",
    "parse_helpsteer2_prompt",
    "plain_text",
    "read_descriptions",
    "read_summary_file",
    "sample_pairs",
    "separation_se",
    "soft_label_from_votes",
    "split_by_contest",
    "split_by_group",
    "split_contests",
    "vote_statistics",
]
