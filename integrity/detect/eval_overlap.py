"""What a mix must not share with the eval sets: their images and their questions."""

from __future__ import annotations

from integrity.detect.pairs import qa_pairs
from integrity.ingest import IngestError, SourceConfig, ingest_source
from integrity.store.versions import VersionStore


def eval_overlap_keys(eval_sets: list[SourceConfig],
                      store: VersionStore) -> tuple[set[str], set[str]]:
    """Image sha256s and normalised questions of the eval sets (read with the same readers)."""
    images, questions = set(), set()
    for eval_set in eval_sets:
        result = ingest_source(eval_set, blob_root=store.blob_root)
        if result.accepted.height == 0:  # an overlap of 0 against nothing would be a lie
            reasons = ", ".join(f"{reason}: {count}"
                                for reason, count in result.quarantine_by_reason().items())
            raise IngestError(
                f"eval set {eval_set.name} ({eval_set.uri}) yields no row to compare against: "
                f"{result.records_in} records, quarantined {reasons or 'none'}")
        pairs = qa_pairs(result.accepted)
        images |= set(pairs["image_sha256"].drop_nulls())
        questions |= set(pairs["question_norm"])
    return images, questions
