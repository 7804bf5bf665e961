"""The one resource every asset and check uses: where sources, the store and the policy are."""


import os
import shlex
from pathlib import Path

from dagster import ConfigurableResource, Failure

import fsspec

from assets.trainers import DEMO_TRAINER_COMMAND
from integrity.detect.encoder import EncoderConfig, encoder_config
from integrity.ingest import SourceConfig, SourcesFileError, load_eval_sets, load_sources
from integrity.ingest.sources import model_for
from integrity.ingest.landing import landed_sources
from integrity.decide.policy import DEFAULT_POLICY, Policy, load_policy
from integrity.store.versions import VersionStore

REPO = Path(__file__).resolve().parent.parent


def _default(variable: str, relative: str) -> str:
    return os.environ.get(variable) or str(REPO / relative)


class IntegrityResource(ConfigurableResource):
    """Paths of the sources file, the version store (local or s3://) and the policy file.

    Defaults come from INTEGRITY_SOURCES, INTEGRITY_STORE and INTEGRITY_POLICY, else the
    demo's sources file (``data/demo/sources.yaml``, written by ``integrity-demo generate``),
    ``data/store`` and the packaged default policy.
    """

    sources_file: str = _default("INTEGRITY_SOURCES", "data/demo/sources.yaml")
    store_root: str = _default("INTEGRITY_STORE", "data/store")
    policy_file: str = os.environ.get("INTEGRITY_POLICY") or str(DEFAULT_POLICY)
    # The landing zone (folder or s3:// prefix) where shards arrive; empty: none.
    landing_root: str = os.environ.get("INTEGRITY_LANDING", "")

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

    def store(self) -> VersionStore:
        return VersionStore(self.store_root)

    def policy(self) -> Policy:
        return load_policy(self.policy_file)


class EncoderResource(ConfigurableResource):
    """How the open_clip model runs. Which model scores a source is the sources file's ``model``
    (per file, or per source); there is no default model.

    INTEGRITY_MODEL with INTEGRITY_PRETRAINED (an open_clip tag or a weights file) override the
    sources file for every source; INTEGRITY_DEVICE (cuda on a GPU) and INTEGRITY_PRECISION
    (fp16, bf16, ...) override its device and precision.
    """

    model: str | None = os.environ.get("INTEGRITY_MODEL") or None
    pretrained: str | None = os.environ.get("INTEGRITY_PRETRAINED") or None
    device: str | None = os.environ.get("INTEGRITY_DEVICE") or None
    precision: str | None = os.environ.get("INTEGRITY_PRECISION") or None
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

    command: list[str] = shlex.split(os.environ.get("INTEGRITY_TRAINER_COMMAND", "")) or list(
        DEMO_TRAINER_COMMAND)
    config: dict = {}  # passed to the trainer as the "config" extra
