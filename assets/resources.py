"""The one resource every asset and check uses: where sources, the store and the policy are.

Settings that come from the environment reach the resources as ``EnvVar`` (definitions.py,
``from_environment``): Dagster resolves them when a run starts, and the UI's resource config
shows the variable's name, never its value (a store URI may carry a credential).
"""


import os
import shlex
from pathlib import Path

from dagster import ConfigurableResource, DagsterInstance, EnvVar, Failure

import fsspec

from assets.trainers import DEMO_RL_COMMAND, DEMO_TRAINER_COMMAND
from assets.versions import MaterializedVersions
from integrity.detect.encoder_config import EncoderConfig, encoder_config
from integrity.ingest import SourceConfig, SourcesFileError, load_eval_sets, load_sources
from integrity.ingest.sources import model_for
from integrity.ingest.landing import landed_sources
from integrity.decide.policy import DEFAULT_POLICY, Policy, load_policy
from integrity.store.versions import VersionStore

REPO = Path(__file__).resolve().parent.parent


# Resource -> field -> the environment variable that sets it.
ENVIRONMENT = {
    "integrity": {"sources_file": "INTEGRITY_SOURCES", "store_root": "INTEGRITY_STORE",
                  "policy_file": "INTEGRITY_POLICY", "landing_root": "INTEGRITY_LANDING"},
    "encoder": {"model": "INTEGRITY_MODEL", "pretrained": "INTEGRITY_PRETRAINED",
                "device": "INTEGRITY_DEVICE", "precision": "INTEGRITY_PRECISION"},
    "trainer": {"command": "INTEGRITY_TRAINER_COMMAND"},
    "rl_probe": {"command": "INTEGRITY_RL_COMMAND", "probe_set": "INTEGRITY_RL_PROBE_SET"},
}


def from_environment(resource: str) -> dict[str, EnvVar]:
    """The fields of ``resource`` (a key of ENVIRONMENT) that the environment sets, as EnvVar."""
    return {field: EnvVar(variable) for field, variable in ENVIRONMENT[resource].items()
            if os.environ.get(variable)}


def environment_value(resource: str, field: str, default: str) -> str:
    """One setting as a run would resolve it, for code that runs outside a run (demo_run)."""
    return os.environ.get(ENVIRONMENT[resource][field]) or default


class IntegrityResource(ConfigurableResource):
    """Paths of the sources file, the version store (local or s3://) and the policy file.

    Defaults come from INTEGRITY_SOURCES, INTEGRITY_STORE and INTEGRITY_POLICY, else the
    demo's sources file (``data/demo/sources.yaml``, written by ``python -m demo generate``),
    ``data/store`` and the packaged default policy.
    """

    sources_file: str = str(REPO / "data/demo/sources.yaml")
    store_root: str = str(REPO / "data/store")
    policy_file: str = str(DEFAULT_POLICY)
    # The landing zone (folder or s3:// prefix) where shards arrive; empty: none.
    landing_root: str = ""

    def landed(self) -> list[SourceConfig]:
        """The ready shards of the landing zone, as sources (integrity/ingest/landing.py)."""
        if not self.landing_root:
            return []
        fs, path = fsspec.core.url_to_fs(self.landing_root)
        keys = [key[len(path):].lstrip("/") for key in fs.find(path)]
        return landed_sources(self.landing_root, keys)

    def sources(self) -> dict[str, SourceConfig]:
        """The sources file's sources and the landing zone's ready shards (the file wins)."""
        landed = {source.name: source for source in self.landed()}
        return landed | {source.name: source for source in load_sources(self.sources_file)}

    def source(self, name: str) -> SourceConfig:
        sources = self.sources()
        if name not in sources:
            raise SourcesFileError(f"source {name!r} is not in {self.sources_file} ({', '.join(sources)})")
        return sources[name]

    def eval_sets(self) -> list[SourceConfig]:
        return load_eval_sets(self.sources_file)

    def store(self, instance: DagsterInstance) -> VersionStore:
        """The store as a run reads it: "latest" is what ``instance`` materialized."""
        return VersionStore(self.store_root, latest_from=MaterializedVersions(instance))

    def policy(self) -> Policy:
        return load_policy(self.policy_file)


class EncoderResource(ConfigurableResource):
    """How the open_clip model runs. Which model scores a source is the sources file's ``model``
    (per file, or per source); there is no default model.

    INTEGRITY_MODEL with INTEGRITY_PRETRAINED (an open_clip tag or a weights file) override the
    sources file for every source; INTEGRITY_DEVICE (cuda on a GPU) and INTEGRITY_PRECISION
    (fp16, bf16, ...) override its device and precision.
    """

    model: str | None = None
    pretrained: str | None = None
    device: str | None = None
    precision: str | None = None
    batch_size: int = 64
    workers: int = 1  # decode workers beside the model threads; more on bigger machines

    def config_for(self, source: SourceConfig, sources_file: str) -> EncoderConfig:
        """The encoder of ``source``: this resource's model when set, else the sources file's."""
        try:
            model = model_for(source, sources_file, name=self.model, pretrained=self.pretrained)
        except SourcesFileError as error:  # a model without its weights, or none at all
            raise Failure(str(error)) from error
        return encoder_config(model, batch_size=self.batch_size, workers=self.workers,
                              device=self.device, precision=self.precision)


class TrainerResource(ConfigurableResource):
    """The trainer training_checkpoint runs through Dagster Pipes: a command and its config.

    Defaults to the bundled demo VQA trainer. Your own: INTEGRITY_TRAINER_COMMAND="python
    train.py" (any command that speaks Pipes; see assets/trainers/demo_vqa.py for the contract).
    """

    command: str = ""  # shell words; empty: the demo trainer
    config: dict = {}  # passed to the trainer as the "config" extra

    def command_words(self) -> list[str]:
        return shlex.split(self.command) or list(DEMO_TRAINER_COMMAND)


class RLProbeResource(ConfigurableResource):
    """The RL command training_rl_probe runs through Dagster Pipes, its probe set and settings.

    Defaults to the bundled demo RL probe on the demo's probe set (``data/demo/rl_probe``,
    written by ``python -m demo generate``). Your own: INTEGRITY_RL_COMMAND="python grpo.py"
    and INTEGRITY_RL_PROBE_SET=/path/probe.json (see assets/trainers/demo_rl.py and README's
    "RL-readiness probe" for the contract). The RL settings (``config``) are fixed here, the
    same for every checkpoint, so probes of different checkpoints compare.
    """

    command: str = ""  # shell words; empty: the demo RL probe
    probe_set: str = str(REPO / "data/demo/rl_probe/probe.json")
    runs: int = 4  # independent RL runs per checkpoint
    config: dict = {}  # passed to the command as the "config" extra

    def command_words(self) -> list[str]:
        return shlex.split(self.command) or list(DEMO_RL_COMMAND)
