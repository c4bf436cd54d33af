"""Transport-neutral core: types, errors, lifecycle, data and control planes.

Nothing in here imports a web, gRPC, database, metrics or ML-framework library.
"""
