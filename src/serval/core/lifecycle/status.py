"""What the manager reports about a model: its versions' statuses and its index rows."""

from __future__ import annotations

from serval.core.lifecycle.index_entry import IndexEntry
from serval.core.lifecycle.record import ModelRecord, waiting_reason
from serval.core.lifecycle.states import ServableId, ServableState, ServableStatus


def version_statuses(record: ModelRecord) -> list[ServableStatus]:
    """Every version the manager knows of, newest first."""
    statuses = [m.status() for m in record.all_managed()]
    for failure in record.failures.values():
        statuses.append(
            ServableStatus(
                ServableId(record.name, failure.version), ServableState.END, failure.error
            )
        )
    for version in record.unloaded - {s.id.version for s in statuses}:
        statuses.append(ServableStatus(ServableId(record.name, version), ServableState.END))
    return sorted(statuses, key=lambda s: s.id.version, reverse=True)


def index_entries(record: ModelRecord, missing: tuple[str, ...] = ()) -> list[IndexEntry]:
    """The model's rows in the repository index; ``missing``: models it needs that are not
    available (a row of their own, like an invalid model.yaml)."""
    name = record.name
    rows: dict[int, IndexEntry] = {}
    if record.source is not None:
        for version, why in record.source.withheld.items():
            rows[version] = IndexEntry(name, version, ServableState.START, why)
    for version in record.unloaded:
        rows[version] = IndexEntry(name, version, ServableState.END, "unloaded")
    for failure in record.failures.values():
        rows[failure.version] = IndexEntry(name, failure.version, ServableState.END, failure.error)
    for managed in record.retiring:
        rows[managed.id.version] = IndexEntry(name, managed.id.version, ServableState.UNLOADING)
    for version in record.loading:
        retry = record.failures.get(version)
        reason = f"retrying; the last attempt failed: {retry.error}" if retry else ""
        rows[version] = IndexEntry(name, version, ServableState.LOADING, reason)
    for version in record.serving:
        reload = record.failures.get(version)
        # A failed reload leaves the previous load serving: say both.
        reason = f"serving the previous load; reloading failed: {reload.error}" if reload else ""
        rows[version] = IndexEntry(name, version, ServableState.AVAILABLE, reason)
    entries = [rows[v] for v in sorted(rows)]
    if record.config_error:
        return [IndexEntry(name, None, ServableState.END, record.config_error), *entries]
    if (missing or record.cycle) and record.wanted:
        reason = waiting_reason(missing, record.spec, record.cycle)
        return [IndexEntry(name, None, ServableState.START, reason), *entries]
    if not entries:
        reason = "not loaded" if not record.wanted else record.no_version_reason()
        return [IndexEntry(name, None, ServableState.START, reason)]
    return entries
