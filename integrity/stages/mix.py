"""Mix the audited versions into a training_mix version, published only when it passes."""

from __future__ import annotations

import polars as pl

from integrity.errors import redact
from integrity.ingest import SourceConfig
from integrity.names import (
    AUDITED_SFT,
    MIX_LLAVA_FILE,
    MIX_SHAREGPT_NAME,
    SCORED_SFT,
    TRAINING_MIX,
)
from integrity.store.versions import VersionStore


def mix_to_store(audited: dict[str, str], store: VersionStore, policy, *,
                 gate: dict[str, dict] | None = None,
                 eval_sets: list[SourceConfig] | None = None) -> tuple:
    """Build the training mix from the kept rows of ``audited`` (source -> audited_sft version),
    run its blocking checks, and commit it (table "data", in training order). Rows another
    source holds first (the duplicate index's keep rule) are left out and counted
    (``copies_removed``).

    Only a mix whose blocking checks all pass is published (the store's latest mix) with its
    exports attached; a failed mix is kept as a version to inspect, never latest, and no export
    of it is written. ``gate``: upstream key -> {"version", "checks_passed"}, what the caller's
    gate verified, recorded for lineage. Returns (mix, Manifest, {attachment name: uri}).
    """
    import tempfile
    from pathlib import Path

    from integrity.mix import training_mix as mixing
    from integrity.decide.gate import TRAINING_MIX_CHECKS, MixUnderReview

    from integrity.decide.audit import copies_of_better_sources
    from integrity.detect.cross_source import current_matches

    scored = {source: store.manifest(AUDITED_SFT, version).upstream[SCORED_SFT]
              for source, version in audited.items()}
    # An audit made before another source was indexed kept rows that source holds first: the
    # keep rule is applied again over the whole index, so any order of audits mixes the same.
    copies = copies_of_better_sources(current_matches(store, scored), policy)
    inputs, removed = [], {}
    for source, version in sorted(audited.items()):
        audited_rows = store.read(AUDITED_SFT, version)
        kept = audited_rows.join(copies.filter(pl.col("source") == source), on="example_id",
                                 how="anti", maintain_order="left")
        removed[source] = audited_rows.height - kept.height
        inputs.append(mixing.MixInput(source=source, audited_version=version, kept=kept,
                                      scored=store.read(SCORED_SFT, scored[source])))
    mix = mixing.build_mix(inputs, policy.mix)
    upstream = {f"{AUDITED_SFT}/{source}": version for source, version in audited.items()}
    review = MixUnderReview(mix, upstream, store, policy, list(eval_sets or []))
    verdicts = {name: check(review) for name, check in TRAINING_MIX_CHECKS.items()}
    failed = sorted(name for name, verdict in verdicts.items() if not verdict.passed)
    with tempfile.TemporaryDirectory() as folder:
        exports = [] if failed else [
            mixing.export_llava(mix, Path(folder) / MIX_LLAVA_FILE,
                                multi_image=policy.mix.llava_multi_image),
            mixing.export_sharegpt(mix, folder, MIX_SHAREGPT_NAME)]
        manifest = store.write(
            TRAINING_MIX, {"data": mix}, upstream=upstream,
            code_version=mixing.CODE_VERSION,
            params={"policy": policy.digest(), "mix": policy.mix.model_dump(),
                    "eval_sets": sorted(redact(eval_set.uri) for eval_set in eval_sets or [])},
            extra={"summary": mixing.mix_summary(mix), "gate": gate or {},
                   "copies_removed": removed,
                   "checks": {name: {"passed": verdict.passed,
                                     "description": verdict.description}
                              for name, verdict in verdicts.items()},
                   "failed_checks": failed,
                   "exports": {export.path.name: export.facts() for export in exports}},
            publish=not failed,
        )
        files = {}
        for export in exports:
            for path in export.files:
                files[path.name] = store.attach(TRAINING_MIX, manifest.version, path.name,
                                                path.read_bytes())
    return mix, manifest, files
