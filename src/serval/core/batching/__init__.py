"""Batching: the queue, the scheduling rule, instances, batch assembly and the adaptive policy."""
