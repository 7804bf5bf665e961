"""Lineage both ways over the store's manifests, queried with DuckDB.

Every committed version's ``manifest.json`` names the versions it was made from
(``upstream``: ``{"<asset>" or "<asset>/<partition>": version}``), so the manifests alone form
the version graph. :func:`load_graph` reads them all (local folder or s3://, through the
store's fsspec filesystem) into two in-memory DuckDB tables::

    versions(asset, version, partition, code_version, policy, created_at, extra_json)
    edges(asset, version, upstream_asset, upstream_partition, upstream_version, checks_passed)

``checks_passed`` is the list of blocking checks the consumer's gate saw passing on that
upstream (``extra.gate[<upstream key>].checks_passed``), or null where no gate recorded them.
:func:`upstream_of` answers "what did this checkpoint consume?" and :func:`downstream_of`
answers "which mixes and checkpoints consumed this bad version or source?" (taint); both are
recursive CTEs over ``edges``. Versions are content hashes, so the graph has no cycles.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb
import polars as pl
from pydantic import ValidationError

from integrity.names import TRAINING_CHECKPOINT
from integrity.store.versions import LATEST_DIR, MANIFEST, STAGING_DIR, Manifest, StoreError, VersionStore

# Folders under the store root that hold no versions.
NOT_ASSETS = frozenset({LATEST_DIR, STAGING_DIR, "embeddings", "images", "reviews"})

VERSIONS_SCHEMA = {
    "asset": pl.String,
    "version": pl.String,
    "partition": pl.String,
    "code_version": pl.String,
    "policy": pl.String,
    "created_at": pl.String,
    "extra_json": pl.String,
}
EDGES_SCHEMA = {
    "asset": pl.String,
    "version": pl.String,
    "upstream_asset": pl.String,
    "upstream_partition": pl.String,
    "upstream_version": pl.String,
    "checks_passed": pl.List(pl.String),
}

# Deepest path wins: a version reached twice (raw_sft via audited_sft and via scored_sft) sits
# under its deepest consumer, so the tree reads in pipeline order, one row per version.
UPSTREAM_SQL = """
WITH RECURSIVE up(depth, asset, version, child_asset, child_version) AS (
    SELECT 0, ?::VARCHAR, ?::VARCHAR, NULL::VARCHAR, NULL::VARCHAR
    UNION
    SELECT up.depth + 1, e.upstream_asset, e.upstream_version, e.asset, e.version
    FROM up JOIN edges e ON e.asset = up.asset AND e.version = up.version
),
deepest AS (
    SELECT * FROM up
    QUALIFY row_number() OVER (
        PARTITION BY asset, version ORDER BY depth DESC, child_asset, child_version) = 1
)
SELECT d.depth, d.asset, d.version, coalesce(v.partition, e.upstream_partition) AS partition,
       d.child_asset AS reached_from_asset, d.child_version AS reached_from, v.policy,
       e.checks_passed, v.code_version, v.created_at, v.version IS NOT NULL AS in_store
FROM deepest d
LEFT JOIN versions v ON v.asset = d.asset AND v.version = d.version
LEFT JOIN edges e ON e.asset = d.child_asset AND e.version = d.child_version
    AND e.upstream_asset = d.asset AND e.upstream_version = d.version
ORDER BY d.depth, d.asset, partition NULLS FIRST, d.version
"""

# Nearest tainted ancestor wins. The walk does not step into another seed: that seed's own walk
# covers what lies below it, so a source's scored/audited versions are not reported as reached.
DOWNSTREAM_SQL = """
WITH RECURSIVE seeds AS ({seeds}),
down(depth, asset, version, parent_asset, parent_version, tainted_asset, tainted_version) AS (
    SELECT 0, asset, version, NULL::VARCHAR, NULL::VARCHAR, asset, version FROM seeds
    UNION
    SELECT d.depth + 1, e.asset, e.version, d.asset, d.version, d.tainted_asset,
           d.tainted_version
    FROM down d
    JOIN edges e ON e.upstream_asset = d.asset AND e.upstream_version = d.version
    LEFT JOIN seeds s ON s.asset = e.asset AND s.version = e.version
    WHERE s.version IS NULL
),
nearest AS (
    SELECT * FROM down WHERE depth > 0
    QUALIFY row_number() OVER (
        PARTITION BY asset, version
        ORDER BY depth, tainted_asset, tainted_version, parent_asset, parent_version) = 1
)
SELECT n.depth, n.asset, n.version, v.partition, n.parent_asset AS reached_from_asset,
       n.parent_version AS reached_from, n.tainted_asset, t.partition AS tainted_partition,
       n.tainted_version, v.code_version, v.created_at
FROM nearest n
JOIN versions v ON v.asset = n.asset AND v.version = n.version
JOIN versions t ON t.asset = n.tainted_asset AND t.version = n.tainted_version
ORDER BY n.depth, n.asset, v.partition NULLS FIRST, n.version
"""


class LineageError(StoreError):
    """A user-facing lineage error (unknown or ambiguous version id, unknown source)."""


def _name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _manifest_paths(store: VersionStore) -> list[str]:
    """Return the paths of every candidate ``<asset>/<version>/manifest.json`` under the root."""
    fs = store.fs
    fs.invalidate_cache()  # other processes write here too
    try:
        assets = fs.ls(store.root, detail=True)
    except FileNotFoundError:
        return []
    paths = []
    for asset in assets:
        if asset["type"] != "directory" or _name(asset["name"]) in NOT_ASSETS:
            continue
        for version in fs.ls(asset["name"], detail=True):
            if version["type"] == "directory" and _name(version["name"])[:1] not in "._":
                paths.append(f"{version['name'].rstrip('/')}/{MANIFEST}")
    return paths


def _read_manifests(store: VersionStore) -> list[Manifest]:
    """Return the manifest of every committed version in the store (one batched read)."""
    paths = _manifest_paths(store)
    # A folder without manifest.json is no version (uncommitted, or not an asset): omitted.
    contents = store.fs.cat(paths, on_error="omit") if paths else {}
    manifests = []
    for path, content in sorted(contents.items()):
        try:
            manifests.append(Manifest.model_validate_json(content))
        except ValidationError as exc:
            raise LineageError(f"{path} is not a version manifest: {exc.errors()[0]['msg']}.")
    return manifests


def _policy(params: dict[str, Any]) -> str | None:
    policy = params.get("policy")
    return policy if policy is None or isinstance(policy, str) else json.dumps(policy)


def _frames(manifests: list[Manifest]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The ``versions`` and ``edges`` frames of ``manifests``."""
    versions, edges = [], []
    for man in manifests:
        versions.append({
            "asset": man.asset,
            "version": man.version,
            "partition": man.partition,
            "code_version": man.code_version,
            "policy": _policy(man.params),
            "created_at": man.created_at,
            "extra_json": json.dumps(man.extra, sort_keys=True),
        })
        gate = man.extra.get("gate") or {}
        for key, upstream_version in man.upstream.items():
            upstream_asset, _, upstream_partition = key.partition("/")
            edges.append({
                "asset": man.asset,
                "version": man.version,
                "upstream_asset": upstream_asset,
                "upstream_partition": upstream_partition or None,
                "upstream_version": upstream_version,
                "checks_passed": (gate.get(key) or {}).get("checks_passed"),
            })
    return (pl.DataFrame(versions, schema=VERSIONS_SCHEMA),
            pl.DataFrame(edges, schema=EDGES_SCHEMA))


def load_graph(store: VersionStore) -> duckdb.DuckDBPyConnection:
    """Read every manifest of ``store`` into an in-memory DuckDB with tables ``versions`` and
    ``edges`` (see the module docstring) and return the connection."""
    versions, edges = _frames(_read_manifests(store))
    con = duckdb.connect()
    for name, frame in (("versions", versions), ("edges", edges)):
        con.register(f"{name}_frame", frame.to_arrow())
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM {name}_frame")
        con.unregister(f"{name}_frame")
    return con


def _graph(store_or_graph: VersionStore | duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    if isinstance(store_or_graph, VersionStore):
        return load_graph(store_or_graph)
    return store_or_graph


def resolve_version(
    graph: duckdb.DuckDBPyConnection, version: str, *, asset: str | None = None
) -> tuple[str, str]:
    """Return ``(asset, version)`` of the one version whose id starts with ``version`` (of
    ``asset`` when given); LineageError if none or several match."""
    prefix = version.strip()
    what = f"{asset} version" if asset else "version"
    if not prefix:
        raise LineageError(f"Empty {what} id.")
    matches = graph.sql(
        "SELECT asset, version FROM versions WHERE starts_with(version, ?)"
        " AND (?::VARCHAR IS NULL OR asset = ?) ORDER BY asset, version",
        params=[prefix, asset, asset],
    ).fetchall()
    if not matches:
        raise LineageError(f"No {what} matches {prefix!r}.")
    if len(matches) > 1:
        found = ", ".join(f"{a} {v}" for a, v in matches[:5])
        more = f" and {len(matches) - 5} more" if len(matches) > 5 else ""
        raise LineageError(f"{what.capitalize()} id {prefix!r} is ambiguous: {found}{more}.")
    return matches[0]


def upstream_of(
    store_or_graph: VersionStore | duckdb.DuckDBPyConnection, asset: str, version: str
) -> pl.DataFrame:
    """Return the full upstream closure of one version of ``asset`` (id or unique prefix).

    One row per reached version, the queried one first at depth 0: depth (longest path from
    the queried version), asset, version, partition, reached_from_asset / reached_from (the
    consumer it sits under), policy, checks_passed (on that edge, from the consumer's gate),
    code_version, created_at, in_store (False for an upstream id the store does not hold).
    """
    graph = _graph(store_or_graph)
    asset, version = resolve_version(graph, version, asset=asset)
    return graph.sql(UPSTREAM_SQL, params=[asset, version]).pl()


def checkpoint_lineage(
    store_or_graph: VersionStore | duckdb.DuckDBPyConnection, checkpoint_version: str
) -> pl.DataFrame:
    """Return what a training checkpoint consumed: :func:`upstream_of` the checkpoint."""
    return upstream_of(store_or_graph, TRAINING_CHECKPOINT, checkpoint_version)


def downstream_of(
    store_or_graph: VersionStore | duckdb.DuckDBPyConnection,
    *,
    version: str | None = None,
    source: str | None = None,
) -> pl.DataFrame:
    """Return every version downstream of a tainted version, or of every version of a source.

    Give exactly one of ``version`` (any asset; id or unique prefix) or ``source`` (every
    version whose partition is that source: its raw_sft, scored_sft and audited_sft versions).
    One row per reached version, the tainted ones themselves left out: depth (from the nearest
    tainted version), asset, version, partition, reached_from_asset / reached_from (its
    upstream on that path), tainted_asset / tainted_partition / tainted_version (the nearest
    tainted ancestor it came through), code_version, created_at. Empty if nothing consumed it.
    """
    if (version is None) == (source is None):
        raise LineageError("Give exactly one of a version id or a source name.")
    graph = _graph(store_or_graph)
    if version is not None:
        seeds = "SELECT asset, version FROM versions WHERE asset = ? AND version = ?"
        params = list(resolve_version(graph, version))
    else:
        seeds = "SELECT asset, version FROM versions WHERE partition = ?"
        params = [source]
        if not graph.sql(seeds, params=params).limit(1).fetchall():
            raise LineageError(f"No version in the store has source {source!r}.")
    return graph.sql(DOWNSTREAM_SQL.format(seeds=seeds), params=params).pl()


def _label(asset: str, partition: str | None, version: str) -> str:
    return f"{asset}/{partition} {version}" if partition else f"{asset} {version}"


def format_lineage(frame: pl.DataFrame) -> str:
    """Render :func:`upstream_of` rows as an indented tree, consumers above what they read."""
    if frame.is_empty():
        return "(no lineage)"
    children: dict[tuple[str | None, str | None], list[dict]] = {}
    for row in frame.iter_rows(named=True):
        children.setdefault((row["reached_from_asset"], row["reached_from"]), []).append(row)

    def line(row: dict) -> str:
        notes = []
        if row["checks_passed"] is not None:
            notes.append(f"gate passed: {', '.join(row['checks_passed']) or 'none'}")
        if row["policy"]:
            notes.append(f"policy {row['policy'][:12]}")
        if row["code_version"]:
            notes.append(f"code {row['code_version']}")
        if not row["in_store"]:
            notes.append("NOT IN STORE")
        label = _label(row["asset"], row["partition"], row["version"])
        return "  ".join([label, *([f"[{'; '.join(notes)}]"] if notes else [])])

    def walk(row: dict, prefix: str, out: list[str]) -> None:
        kids = children.get((row["asset"], row["version"]), [])
        for i, kid in enumerate(kids):
            is_last = i == len(kids) - 1
            out.append(f"{prefix}{'└── ' if is_last else '├── '}{line(kid)}")
            walk(kid, prefix + ("    " if is_last else "│   "), out)

    root = frame.row(0, named=True)
    out = [line(root)]
    walk(root, "", out)
    return "\n".join(out)


def format_taint(frame: pl.DataFrame) -> str:
    """Render :func:`downstream_of` rows as a table with a per-asset count above it."""
    if frame.is_empty():
        return "Nothing downstream: no version in the store consumed it."
    counts = frame.group_by("asset").len().sort("asset")
    header = ", ".join(f"{asset}: {n}" for asset, n in counts.iter_rows())
    table = [("depth", "asset", "version", "tainted through", "created_at")]
    for row in frame.iter_rows(named=True):
        table.append((
            str(row["depth"]),
            f"{row['asset']}/{row['partition']}" if row["partition"] else row["asset"],
            row["version"],
            _label(row["tainted_asset"], row["tainted_partition"], row["tainted_version"]),
            row["created_at"][:19],
        ))
    widths = [max(len(cells[i]) for cells in table) for i in range(len(table[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(cells, widths)).rstrip()
             for cells in table]
    return f"{frame.height} tainted version(s) downstream ({header})\n" + "\n".join(lines)
