"""The sft-integrity code location: every asset, check, resource and sensor, in one place."""

from dagster import Definitions, in_process_executor
from dagster_aws.s3 import S3Resource

from assets.audited import audited_sft
from assets.automation import (
    audit_automation,
    audit_job,
    mix_job,
    nightly_audit,
    nightly_mix,
    train_job,
)
from assets.checkpoint import training_checkpoint
from assets.duplicate_index import duplicate_index
from assets.mix import training_mix
from assets.raw import raw_sft
from assets.rl_probe import rl_ready_checkpoint, training_rl_probe
from assets.resources import (
    EncoderResource,
    IntegrityResource,
    RLProbeResource,
    TrainerResource,
    from_environment,
)
from assets.scored import scored_sft
from assets.sensors import landing_sensor, sources_sensor
from checks.audited import AUDITED_SFT_CHECKS
from checks.checkpoint import training_checkpoint_cka, training_checkpoint_visual_reliance
from checks.mix import (
    training_mix_curriculum,
    training_mix_modality_band,
    training_mix_no_duplicates,
    training_mix_no_eval_overlap,
    training_mix_traceable,
)
from checks.raw import raw_sft_contract, raw_sft_has_rows, raw_sft_quarantine_rate
from checks.rl_probe import training_rl_probe_hacking_rate
from checks.scored import SCORED_SFT_CHECKS

defs = Definitions(
    assets=[raw_sft, scored_sft, duplicate_index, audited_sft, training_mix, training_checkpoint,
            training_rl_probe, rl_ready_checkpoint],
    asset_checks=[
        raw_sft_contract, raw_sft_quarantine_rate, raw_sft_has_rows,
        *SCORED_SFT_CHECKS,
        *AUDITED_SFT_CHECKS,
        training_mix_modality_band, training_mix_curriculum, training_mix_traceable,
        training_mix_no_eval_overlap, training_mix_no_duplicates,
        training_checkpoint_visual_reliance, training_checkpoint_cka,
        training_rl_probe_hacking_rate,
    ],
    jobs=[audit_job, mix_job, train_job],
    schedules=[nightly_audit, nightly_mix],
    sensors=[sources_sensor, landing_sensor, audit_automation],
    resources={"integrity": IntegrityResource(**from_environment("integrity")),
               "encoder": EncoderResource(**from_environment("encoder")),
               "trainer": TrainerResource(**from_environment("trainer")),
               "rl_probe": RLProbeResource(**from_environment("rl_probe")),
               # The landing sensor lists s3:// landing zones with it; credentials and endpoint
               # come from the environment (AWS_ACCESS_KEY_ID, ..., AWS_ENDPOINT_URL).
               "s3": S3Resource()},
    # Every step of a run in one process: a process per step (Dagster's default) re-imports
    # torch, open_clip, polars and GX for each and cost minutes a run. Runs stay isolated from
    # each other: the deploy profile's run launcher gives each run its own pod or task.
    executor=in_process_executor,
)
