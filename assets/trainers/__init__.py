"""Trainers that ``training_checkpoint`` runs as separate processes through Dagster Pipes.

``DEMO_TRAINER_COMMAND`` is the default trainer: the bundled demo VQA trainer (``demo_vqa.py``);
``DEMO_RL_COMMAND`` the default RL probe (``demo_rl.py``). Any command that speaks Pipes can
replace either; each module's docstring is its contract.
"""

from __future__ import annotations

import sys

DEMO_TRAINER_MODULE = "assets.trainers.demo_vqa"
DEMO_TRAINER_COMMAND: tuple[str, ...] = (sys.executable, "-m", DEMO_TRAINER_MODULE)
# The RL-readiness probe's default: the demo RL runs (demo_rl.py) for the demo VQA model.
DEMO_RL_MODULE = "assets.trainers.demo_rl"
DEMO_RL_COMMAND: tuple[str, ...] = (sys.executable, "-m", DEMO_RL_MODULE)

__all__ = ["DEMO_RL_COMMAND", "DEMO_RL_MODULE", "DEMO_TRAINER_COMMAND", "DEMO_TRAINER_MODULE"]
