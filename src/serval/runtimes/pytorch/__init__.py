"""PyTorch: TorchScript ``model.pt``, ``torch.export`` programs ``model.pt2`` and, when trusted,
pickled modules (docs/runtimes/pytorch.md)."""
