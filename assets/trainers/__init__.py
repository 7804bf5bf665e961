"""Trainers that ``training_checkpoint`` runs as separate processes through Dagster Pipes.

``DEMO_TRAINER_COMMAND`` is the default: the bundled demo VQA trainer (``demo_vqa.py``). Any
command that speaks Pipes can replace it; see ``demo_vqa.py`` for the contract.
"""

from __future__ import annotations

import sys

DEMO_TRAINER_MODULE = "assets.trainers.demo_vqa"
DEMO_TRAINER_COMMAND: tuple[str, ...] = (sys.executable, "-m", DEMO_TRAINER_MODULE)

__all__ = ["DEMO_TRAINER_COMMAND", "DEMO_TRAINER_MODULE"]
