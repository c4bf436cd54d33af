"""Who may call what: bearer tokens with roles, per-token rate limits, and how much an error
tells a caller. Used by every protocol adapter (REST, gRPC); free of web and gRPC libraries."""
