"""End-to-end jobs built on a trained reward model: anchor labelling (`anchor_labeling`), pairwise evaluation
(`evaluation`, its figures in `evaluation_plots`), RewardBench (`rewardbench`), best-of-N (the `best_of_n` package) and
Hub model cards (`cards`). Each module is imported on its own."""
