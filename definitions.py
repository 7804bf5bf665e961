"""The sft-integrity code location: every asset, check, resource and sensor, in one place."""

from dagster import Definitions

from assets.raw import raw_sft
from assets.resources import IntegrityResource
from assets.sensors import sources_sensor
from checks.raw import raw_sft_contract, raw_sft_quarantine_rate

defs = Definitions(
    assets=[raw_sft],
    asset_checks=[raw_sft_contract, raw_sft_quarantine_rate],
    sensors=[sources_sensor],
    resources={"integrity": IntegrityResource()},
)
