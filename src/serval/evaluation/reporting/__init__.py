"""What is read back offline (``serval monitor``): the export of logged predictions joined
with ground truth, and the HTML report."""
