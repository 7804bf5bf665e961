"""Lineage as Dagster table metadata: the versions a mix or a checkpoint consumed, one row each,
so the UI shows them on the asset's page (the UI's lineage graph is per asset definition)."""

import polars as pl
from dagster import MetadataValue, TableColumn, TableRecord, TableSchema

CONSUMED_COLUMNS = TableSchema(columns=[
    TableColumn("asset", "string"), TableColumn("partition", "string"),
    TableColumn("version", "string"), TableColumn("consumed_by", "string"),
    TableColumn("checks_passed", "string"), TableColumn("policy", "string")])


def consumed_versions(lineage: pl.DataFrame) -> MetadataValue:
    """Every upstream version of ``integrity.store.lineage.upstream_of`` (the queried one left out)."""
    rows = lineage.filter(pl.col("depth") > 0).sort("depth", "asset", "partition")
    return MetadataValue.table(
        records=[TableRecord({
            "asset": row["asset"], "partition": row["partition"] or "",
            "version": row["version"],
            "consumed_by": f"{row['reached_from_asset']} {row['reached_from']}",
            "checks_passed": ", ".join(row["checks_passed"] or []) or "-",
            "policy": row["policy"] or "-"}) for row in rows.iter_rows(named=True)],
        schema=CONSUMED_COLUMNS)


def counts_table(counts: dict[str, int], key: str) -> MetadataValue:
    """A {name: rows} summary as a two-column table."""
    return MetadataValue.table(
        records=[TableRecord({key: str(name), "rows": int(number)})
                 for name, number in counts.items()],
        schema=TableSchema(columns=[TableColumn(key, "string"), TableColumn("rows", "int")]))
