"""Which open_clip model the encoder runs, and what scoring needs of it besides its vectors.

Torch-free: a sources file, the Dagster resources and the CLI validate a model config without
importing torch or open_clip (``clip_model`` does, when a model is loaded).
"""

from __future__ import annotations

import re
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from integrity.errors import UserError

DEVICES = ("auto", "cpu", "cuda", "cuda:<index>", "mps")
Precision = Literal["fp32", "fp16", "bf16", "pure_fp16", "pure_bf16", "amp", "amp_bf16"]
PRECISIONS = get_args(Precision)
_DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
_MODEL_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+=-]*")


class EncoderError(UserError):
    """A model that cannot be loaded, a device that is not there, or images that cannot be read."""


class EncoderConfig(BaseModel):
    """Which open_clip model to run, where, and how (validated at the boundary)."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    model: str = Field("ViT-B-32", min_length=1, description="open_clip model name.")
    pretrained: str | None = Field(
        None,
        description="open_clip pretrained tag (e.g. 'laion2b_s34b_b79k') or a local checkpoint "
        "path; None = random init (tests and demos).",
    )
    device: str = Field("auto", description=f"One of {DEVICES}; auto = cuda if available else cpu.")
    batch_size: int = Field(64, ge=1, description="Images or texts per model forward.")
    workers: int = Field(
        2,
        ge=0,
        description="DataLoader worker processes that read and decode images; 0 = in-process "
        "(also used when a call has at most two batches to read).",
    )
    precision: Precision = Field(
        "fp32", description=f"One of {PRECISIONS} (open_clip's names; amp = autocast)."
    )
    model_id: str | None = Field(
        None, description="Cache identity override; default derived from model and weights."
    )
    config_file: str | None = Field(
        None, description="An open_clip model config (JSON) to register before loading, for a "
        "model open_clip does not know (registered under its file name)."
    )

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not _DEVICE_PATTERN.fullmatch(value):
            raise ValueError(f"device must be one of {', '.join(DEVICES)}; got {value!r}")
        return value

    @field_validator("model_id")
    @classmethod
    def _safe_model_id(cls, value: str | None) -> str | None:
        if value is not None and not _MODEL_ID_PATTERN.fullmatch(value):
            raise ValueError(
                f"model_id must be letters, digits and . _ @ + = - (not first); got {value!r}"
            )
        return value


def encoder_config(model, *, batch_size: int = 64, workers: int = 1,
                   device: str | None = None, precision: str | None = None) -> EncoderConfig:
    """The EncoderConfig of a sources file's ``model`` (``ingest.ModelConfig``); ``device`` and
    ``precision`` override the file's."""
    from pydantic import ValidationError

    from integrity.ingest.sources import RANDOM_WEIGHTS

    try:
        return EncoderConfig(
            model=model.name, config_file=model.config,
            pretrained=None if model.pretrained == RANDOM_WEIGHTS else model.pretrained,
            device=device or model.device, precision=precision or model.precision,
            batch_size=batch_size, workers=workers)
    except ValidationError as error:  # a device, precision or batch size the user gave
        problems = "; ".join(f"{'.'.join(map(str, item['loc']))}: {item['msg']}"
                             for item in error.errors())
        raise EncoderError(f"model {model.name}: {problems}") from error


class ModelCard(BaseModel):
    """What scoring needs of a model besides its vectors, kept in the cache beside them so a
    warm re-score never loads the model: embedding size and temperature (probabilities are
    ``softmax(logit_scale * cosines)``; ``logit_bias`` for SigLIP models)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dim: int = Field(ge=1)
    logit_scale: float
    logit_bias: float | None = None
