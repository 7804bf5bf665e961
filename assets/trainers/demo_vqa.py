"""The demo trainer's Pipes side: ``python -m assets.trainers.demo_vqa``, launched by Dagster.

``training_checkpoint`` starts this script through a Pipes client (``PipesSubprocessClient`` by
default) and passes, as Pipes extras:

- ``mix_path`` (required): the exported training mix, LLaVA json with absolute image paths;
- ``out_path`` (required): where to write the checkpoint;
- ``config`` (optional): a dict of ``demo.trainer.TrainConfig`` fields.

It trains (``demo.trainer.train``; all logic lives there), streams progress through
``context.log`` and reports one asset materialization whose metadata is the metrics
(``accuracy``, ``blind_accuracy``, ``visual_reliance``, ``cka``, ...) plus ``checkpoint_path``
and ``checkpoint_sha256``.

Swapping in your own trainer: point ``training_checkpoint``'s trainer command at any program
that speaks Dagster Pipes (Python with ``dagster-pipes``, or any language that implements the
protocol; on Kubernetes, Databricks or EMR use the matching Pipes client). The contract:

1. ``context = open_dagster_pipes()``; read ``context.get_extra("mix_path")`` and
   ``context.get_extra("out_path")`` (and any ``config`` extra you choose to accept);
2. train on the mix and write the checkpoint to ``out_path``;
3. ``context.report_asset_materialization(metadata={"checkpoint_path": out_path, ...})`` with
   your metrics. The checkpoint checks read ``visual_reliance`` (accuracy with the image minus
   accuracy with it blanked) and ``cka`` (vision-tower drift vs the pretrained baseline), so
   report them under these names if you want those checks to gate your runs.

The lineage (checkpoint -> mix -> audited versions) is recorded by the asset, not by the
trainer, so it holds for any command.
"""

from __future__ import annotations

import sys

from dagster_pipes import PipesEnvVarParamsLoader, open_dagster_pipes

from demo.trainer import TrainConfig, train


def main() -> int:
    if not PipesEnvVarParamsLoader().is_dagster_pipes_process():
        print("assets.trainers.demo_vqa runs under Dagster Pipes (training_checkpoint); to "
              "train by hand use `python -m demo.trainer --mix ... --out ...`",
              file=sys.stderr)
        return 2
    with open_dagster_pipes() as context:
        mix_path = context.get_extra("mix_path")
        out_path = context.get_extra("out_path")
        config = TrainConfig(**(context.extras.get("config") or {}))
        context.log.info(f"demo VQA trainer: {mix_path} -> {out_path}, {config.model_dump()}")
        metrics = train(mix_path, out_path, config, log=context.log.info)
        # Pipes infers scalar types; a dict (per_attribute) must say it is json.
        metadata = {key: {"raw_value": value, "type": "json"} if isinstance(value, dict)
                    else value for key, value in metrics.items()}
        metadata["checkpoint_path"] = {"raw_value": metrics["checkpoint_path"], "type": "path"}
        context.report_asset_materialization(metadata=metadata)
    return 0


if __name__ == "__main__":
    sys.exit(main())
