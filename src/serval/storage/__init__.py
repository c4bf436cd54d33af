"""Stores of state that outlives a request or a process: protocols live in core, the
implementations that talk to Redis (and, later, SQLite and PostgreSQL) live here."""
