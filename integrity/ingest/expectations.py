"""The Great Expectations suite of raw_sft: the contract a source must meet to go on.

GX 1.x validates pandas frames (it has no polars source), so the suite runs on a pandas view
of the columns it needs plus derived contract columns computed with the same polars expressions
ingest uses. An ephemeral context keeps it in-process, with no files and no analytics.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import polars as pl

from integrity.ingest.validate import image_count, image_token_count, roles_alternate
from integrity.ingest.schema import MODALITIES, RAW_SFT_SCHEMA

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

# Columns every row must fill (a list column may be empty, never null).
NOT_NULL = ("example_id", "modality", "turns", "images", "image_uris", "image_sha256")


@dataclass(frozen=True)
class SuiteResult:
    success: bool
    failed: list[str]          # one line per failed expectation
    evaluated: int


def _contract_view(frame: pl.DataFrame) -> pl.DataFrame:
    """Scalar columns GX can check: the scalar columns present, each list column present as its
    length (null where the list is), plus derived contract columns."""
    derived = {
        "roles_alternate": roles_alternate() if "turns" in frame.columns else pl.lit(None),
        "n_image_tokens": image_token_count() if "turns" in frame.columns else pl.lit(None),
        "n_images": image_count() if "images" in frame.columns else pl.lit(None),
        "n_image_hashes": pl.col("image_sha256").list.len()
        if "image_sha256" in frame.columns
        else pl.lit(None),
    }
    columns = [pl.col(name).list.len() if isinstance(dtype, pl.List) else pl.col(name)
               for name, dtype in frame.schema.items()]
    return frame.select(*columns, **derived)


def validate_raw_sft(frame: pl.DataFrame) -> SuiteResult:
    """Run the raw_sft suite over ``frame``; returns which expectations failed, if any."""
    import great_expectations as gx  # imported here: it costs ~3 s and only checks need it

    # Its ephemeral context announces a temp docs folder at INFO on every validation.
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    view = _contract_view(frame).to_pandas()
    expectations = [
        *(gx.expectations.ExpectColumnToExist(column=name) for name in RAW_SFT_SCHEMA.names()),
        *(gx.expectations.ExpectColumnValuesToNotBeNull(column=name) for name in NOT_NULL),
        gx.expectations.ExpectColumnValuesToBeUnique(column="example_id"),
        gx.expectations.ExpectColumnValuesToBeInSet(column="modality", value_set=list(MODALITIES)),
        gx.expectations.ExpectColumnValuesToBeInSet(column="roles_alternate", value_set=[True]),
        # A null turns, images or image_sha256 is reported by its own not-null expectation,
        # not again as a count mismatch.
        gx.expectations.ExpectColumnPairValuesToBeEqual(
            column_A="n_image_tokens", column_B="n_images", ignore_row_if="either_value_is_missing"),
        gx.expectations.ExpectColumnPairValuesToBeEqual(
            column_A="n_image_hashes", column_B="n_images", ignore_row_if="either_value_is_missing"),
    ]
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("raw_sft")
        .add_dataframe_asset("rows")
        .add_batch_definition_whole_dataframe("all")
        .get_batch(batch_parameters={"dataframe": view})
    )
    suite = gx.ExpectationSuite(name="raw_sft", expectations=expectations)
    result = batch.validate(suite)
    failed = []
    for item in result.results:
        if not item.success:
            config = item.expectation_config
            kwargs = {k: v for k, v in config.kwargs.items() if k in ("column", "column_A", "column_B")}
            unexpected = (item.result or {}).get("unexpected_count")
            failed.append(f"{config.type} {kwargs}" + (f": {unexpected} rows" if unexpected else ""))
    return SuiteResult(success=bool(result.success), failed=failed, evaluated=len(result.results))
