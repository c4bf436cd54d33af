"""What is computed from the records: the training reference mapped to the model's inputs,
drift scores, quality metrics, and how ground truth is read."""
