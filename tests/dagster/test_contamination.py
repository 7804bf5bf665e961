"""Acceptance: a heavily contaminated corpus fails the audited checks and nothing downstream runs.

The corpus has answers written from captions the rows do not carry (as when metadata is
stripped before release): no caption-based detector can see them, so the audit keeps them, and
the grounding check on kept image rows (the pixels) is what must stop the source.
"""

import pytest
from dagster import asset, materialize

from assets.audited import AUDITED_SFT_BLOCKING_CHECKS, audited_sft
from assets.duplicate_index import duplicate_index
from assets.gate import GateClosed, require_checks_passed
from assets.partitions import sources_partitions
from assets.raw import raw_sft
from assets.resources import EncoderResource, IntegrityResource
from assets.scored import scored_sft
from definitions import defs
from demo.generate import DemoConfig, generate
from tests.models import DEMO_MODEL_YAML

consumed: list[str] = []


@asset(partitions_def=sources_partitions, deps=[audited_sft])
def training_probe(context) -> None:
    """Stands in for training_mix: reads audited_sft only through the in-code gate."""
    consumed.append(require_checks_passed(context, audited_sft.key, AUDITED_SFT_BLOCKING_CHECKS))


def _audit(tmp_path, instance, config: DemoConfig):
    generate(tmp_path / "demo", config)
    (tmp_path / "sources.yaml").write_text(
        DEMO_MODEL_YAML
        + f"sources:\n  - {{name: corpus, uri: {tmp_path / 'demo' / 'llava.jsonl'}}}\n")
    integrity = IntegrityResource(sources_file=str(tmp_path / "sources.yaml"),
                                  store_root=str(tmp_path / "store"))
    instance.add_dynamic_partitions("sources", ["corpus"])
    consumed.clear()
    result = materialize([raw_sft, scored_sft, duplicate_index, audited_sft, *defs.asset_checks, training_probe],
                         partition_key="corpus", instance=instance,
                         resources={"integrity": integrity, "encoder": EncoderResource(workers=0)},
                         raise_on_error=False)
    return result, {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


@pytest.mark.parametrize("contaminated", [False, True], ids=["clean", "heavily-contaminated"])
def test_contamination_fails_the_audit_and_blocks_what_comes_after(tmp_path, instance,
                                                                   contaminated):
    config = DemoConfig(rows=300, seed=21, captions=not contaminated,
                        caption_derived_rate=0.4 if contaminated else 0.05)
    result, checks = _audit(tmp_path, instance, config)
    assert result.asset_materializations_for_node("audited_sft")  # written, then checked
    if not contaminated:
        assert result.success and checks["audited_sft_grounding"]
        assert len(consumed) == 1
        return
    assert not result.success and checks["audited_sft_grounding"] is False
    assert result.is_node_untouched("training_probe") and consumed == []
    # A later manual run of the consumer is refused by the in-code gate, naming the check.
    with pytest.raises(GateClosed, match="audited_sft_grounding failed"):
        materialize([audited_sft, training_probe], partition_key="corpus", instance=instance,
                    selection=[training_probe.key],
                    resources={"integrity": IntegrityResource(
                        sources_file=str(tmp_path / "sources.yaml"),
                        store_root=str(tmp_path / "store"))})
    assert consumed == []
