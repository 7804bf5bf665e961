"""Mix: the kept rows of every audited source made into a training mix (``training_mix``): the
modality band, source weights and curriculum, and the exports the trainers' own loaders accept
(LLaVA json, LLaMA-Factory ShareGPT with its dataset_info.json, parquet).
"""
