"""Research studies, kept out of the public `trl_anchor` namespace (like `trl.experimental`): the identifiability
simulation (`simulation`), the real-vote caption study (`caption_study`), the caption best-of-N benchmark
(`caption_benchmark`) and the IRL-SFT study on a verifiable task (`irl_sft_task`, report in `irl_sft_report`). Each
runs from the CLI (`trl-anchor simulate`, `trl-anchor caption-study`, `trl-anchor bon --caption_benchmark`,
`trl-anchor irl-sft-study`) and writes its report under `reports/`."""
