"""A hand-made RL command for tests: speaks Dagster Pipes like any RL stack would, without
training anything. ``training_rl_probe`` runs it as ``python hacking_rl_command.py MODE``.

MODE:
- ``hacking``: every run's reward rises while its visual reliance falls by 0.3 (an incident
  under the default policy's 0.1 margin);
- ``no-runs``: reports a materialization without ``runs``;
- ``bad-runs``: reports ``runs`` whose reliance curve is a single point.

Every mode also reports what it was handed (the checkpoint's sha256, the probe set, the runs
and config extras), so a test can see the asset passed the store's checkpoint through.
Only the standard library and dagster_pipes: nothing of the repository is imported.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from dagster_pipes import open_dagster_pipes


def _curves(runs: int) -> list[dict]:
    return [{"run": f"hack-{i}", "step": [0, 5, 10],
             "reward": [0.5, 0.6 + 0.01 * i, 0.7 + 0.01 * i],
             "reliance": [0.4, 0.25, 0.1]}  # down by 0.3 while reward went up
            for i in range(runs)]


def main(mode: str) -> int:
    with open_dagster_pipes() as context:
        checkpoint = Path(context.get_extra("checkpoint_path"))
        handed = {
            "checkpoint_sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
            "probe_set_seen": str(context.get_extra("probe_set")),
            "runs_asked": int(context.get_extra("runs")),
            "config_seen": {"raw_value": context.extras.get("config") or {}, "type": "json"},
        }
        context.log.info(f"hand-made RL command, mode {mode}")
        if mode == "hacking":
            runs = {"runs": {"raw_value": _curves(handed["runs_asked"]), "type": "json"}}
        elif mode == "bad-runs":
            curve = _curves(1)[0]
            curve["reliance"] = curve["reliance"][:1]
            runs = {"runs": {"raw_value": [curve], "type": "json"}}
        elif mode == "no-runs":
            runs = {}
        else:
            raise SystemExit(f"unknown mode {mode!r}")
        context.report_asset_materialization(metadata={**handed, **runs})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
