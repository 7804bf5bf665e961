"""The demo's model as a sources file names it (sources files name their model; no default)."""

import json

from demo.reference import REFERENCE_CONFIG, REFERENCE_WEIGHTS

DEMO_MODEL = {"name": "shapes-clip", "pretrained": str(REFERENCE_WEIGHTS),
              "config": str(REFERENCE_CONFIG)}
DEMO_MODEL_YAML = f"model: {json.dumps(DEMO_MODEL)}\n"
