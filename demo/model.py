"""Where the demo's reference CLIP lives: an open_clip config and weights shipped as package
data (trained on the shapes world by ``python -m demo train-reference``)."""

from pathlib import Path

MODEL_NAME = "shapes-clip"
MODELS_DIR = Path(__file__).resolve().parent / "models"
REFERENCE_CONFIG = MODELS_DIR / f"{MODEL_NAME}.json"
REFERENCE_WEIGHTS = MODELS_DIR / f"{MODEL_NAME}.pt"


def demo_encoder_config(**options):
    """The EncoderConfig of the demo's reference CLIP (its config registered from the package's
    JSON); ``options`` override any field, ``pretrained=None`` for the untrained model."""
    from integrity.detect.encoder_config import EncoderConfig

    return EncoderConfig(**{"model": MODEL_NAME, "pretrained": str(REFERENCE_WEIGHTS),
                            "config_file": str(REFERENCE_CONFIG), **options})
