"""What is recorded: the sampled prediction log and its tensor encoding, ground truth kept
for the feedback API, and which models are monitored."""
