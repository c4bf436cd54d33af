"""Model lifecycle: the source, version policy, loaders, the manager, handles and states."""
