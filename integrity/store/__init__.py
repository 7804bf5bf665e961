"""Store: where every version lives. ``versions`` (content-addressed versions: parquet parts and a
manifest with each file's sha256, verified on every read, local or ``s3://``),
``embedding_cache`` (embeddings by content hash and model, so a re-audit needs no model) and
``lineage`` (DuckDB over the manifests: which checkpoint consumed which audited version, both
ways). The store knows nothing of detectors or decisions.
"""
