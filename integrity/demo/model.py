"""Where the demo's reference CLIP lives: an open_clip config and weights shipped as package
data (trained on the shapes world by ``integrity demo train-reference``)."""

from pathlib import Path

MODEL_NAME = "shapes-clip"
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
REFERENCE_CONFIG = MODELS_DIR / f"{MODEL_NAME}.json"
REFERENCE_WEIGHTS = MODELS_DIR / f"{MODEL_NAME}.pt"
