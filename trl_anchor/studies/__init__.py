"""Research studies, kept out of the public `trl_anchor` namespace (like `trl.experimental`): the identifiability
simulation (`simulation`), the real-vote caption study (`caption_study`) and the caption best-of-N benchmark
(`caption_benchmark`). Each runs from the CLI (`trl-anchor simulate`, `trl-anchor caption-study`,
`trl-anchor bon --caption_benchmark`) and writes its report under `reports/`."""
