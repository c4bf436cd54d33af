"""Protocol adapters: they translate wire formats to core types and back, nothing more."""
