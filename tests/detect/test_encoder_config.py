"""The encoder's config: validated at the boundary, without torch."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from integrity.detect.encoder_config import EncoderConfig, EncoderError, ModelCard, encoder_config
from integrity.ingest.sources import ModelConfig


def test_invalid_options_name_the_field():
    with pytest.raises(ValidationError, match="device") as error:
        EncoderConfig(device="gpu")
    assert "auto, cpu, cuda" in str(error.value)
    with pytest.raises(ValidationError, match="precision"):
        EncoderConfig(precision="fp8")
    with pytest.raises(ValidationError, match="workers"):
        EncoderConfig(workers=-1)
    with pytest.raises(ValidationError, match="batch"):
        EncoderConfig(batch_size=0)
    with pytest.raises(ValidationError, match="modle"):
        EncoderConfig(modle="ViT-B-32")
    assert EncoderConfig(device="cuda:1").device == "cuda:1"


def test_a_sources_files_model_becomes_a_config_or_an_error_naming_the_field():
    model = ModelConfig(name="ViT-B-32", pretrained="laion2b_s34b_b79k")
    config = encoder_config(model, batch_size=8, device="cpu")
    assert (config.model, config.pretrained, config.device, config.batch_size) == (
        "ViT-B-32", "laion2b_s34b_b79k", "cpu", 8)
    with pytest.raises(EncoderError, match="ViT-B-32: device"):
        encoder_config(model, device="gpu")


def test_a_model_card_holds_a_size_and_a_temperature():
    card = ModelCard(dim=512, logit_scale=100.0)
    assert ModelCard.model_validate(card.model_dump()) == card and card.logit_bias is None
    with pytest.raises(ValidationError):
        ModelCard(dim=0, logit_scale=1.0)
