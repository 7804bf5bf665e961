"""Asset, table and attachment names: one place every module (and Dagster) takes them from."""

RAW_SFT = "raw_sft"
SCORED_SFT = "scored_sft"
AUDITED_SFT = "audited_sft"
TRAINING_MIX = "training_mix"
TRAINING_CHECKPOINT = "training_checkpoint"
TRAINING_RL_PROBE = "training_rl_probe"  # short RL runs from a checkpoint: does it hack?
RL_READY_CHECKPOINT = "rl_ready_checkpoint"  # a checkpoint every gate let through to RL
CALIBRATION = "calibration"
DUPLICATE_INDEX = "duplicate_index"  # per source: its copies of every other source

# Files attached beside versions (VersionStore.attach).
REPORT_FILE = "report.html"
REVIEW_FILE = "review.jsonl"
MIX_LLAVA_FILE = "mix_llava.json"
MIX_SHAREGPT_NAME = "integrity_mix"  # <name>.json + dataset_info.json (LLaMA-Factory)
CHECKPOINT_FILE = "checkpoint.pt"
RL_CURVES_FILE = "rl_curves.png"
CALIBRATION_REPORT_FILE = "calibration.html"
