"""Stores of state that outlives a request or a process: bandit arms in Redis
(``redis_bandits``), and the evaluation store (``evaluation``: the protocol; memory, SQLite and
PostgreSQL implementations, ``open_store`` to pick one, ``spill`` for records kept while it is
down). Protocols the core needs live in core."""
