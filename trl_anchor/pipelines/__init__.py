"""End-to-end jobs built on a trained reward model: anchor labelling (`anchor_labeling`), evaluation
(`evaluation`), best-of-N (`best_of_n`) and Hub model cards (`cards`). Each module is imported on its own."""
