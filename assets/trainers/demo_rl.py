"""The demo RL probe's Pipes side: ``python -m assets.trainers.demo_rl``, launched by Dagster.

``training_rl_probe`` starts this script through a Pipes client and passes, as Pipes extras:

- ``checkpoint_path`` (required): the checkpoint to start every run from, as the store holds it;
- ``probe_set`` (required): the held-back probe questions, LLaVA json (one human question and
  the reference answer as the gpt turn per record, image paths absolute or relative to it);
- ``runs`` (required): how many independent RL runs to make;
- ``config`` (optional): a dict of ``demo.rl.RLConfig`` fields.

It runs ``demo.rl.rl_probe`` (all logic lives there), streams a line per run through
``context.log`` and reports one asset materialization whose metadata ``runs`` (json) is a list
with one object per run:

    {"run": <id>, "step": [0, 5, ...], "reward": [...], "reliance": [...]}

``reward`` is the expected correctness reward and ``reliance`` the visual reliance
(probability of the reference answer with the image minus without it) at each measured step;
the first point is the checkpoint before RL, the last the policy after. Any RL stack (TRL's
GRPO, OpenRLHF, veRL) plugs in by reporting the same ``runs`` from its own command; README's
"RL-readiness probe" section has the contract. ``training_rl_probe`` decides which runs are
hacking incidents (integrity/decide/rl_probe.py), never the command.
"""

from __future__ import annotations

import sys

from dagster_pipes import PipesEnvVarParamsLoader, open_dagster_pipes

from demo.rl import RLConfig, rl_probe


def main() -> int:
    if not PipesEnvVarParamsLoader().is_dagster_pipes_process():
        print("assets.trainers.demo_rl runs under Dagster Pipes (training_rl_probe); to probe "
              "by hand use `python -m demo.rl --checkpoint ... --probe-set ...`",
              file=sys.stderr)
        return 2
    with open_dagster_pipes() as context:
        config = RLConfig(**(context.extras.get("config") or {}))
        result = rl_probe(context.get_extra("checkpoint_path"), context.get_extra("probe_set"),
                          runs=int(context.get_extra("runs")), config=config,
                          log=context.log.info)
        context.report_asset_materialization(metadata={
            "runs": {"raw_value": result.pop("runs"), "type": "json"},
            "rl_config": {"raw_value": result.pop("config"), "type": "json"},
            **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
