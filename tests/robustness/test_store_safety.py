"""No pickle anywhere data flows: checkpoints load with weights_only=True, a hostile checkpoint
never runs code, and an ingested, stored, cached source leaves no pickle file behind."""

from __future__ import annotations

import pathlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from demo.model import demo_encoder_config
from demo.trainer import TrainerError, load_checkpoint
from integrity.store.embedding_cache import EmbeddingCache
from integrity.ingest import SourceConfig
from integrity.stages import ingest_to_store
from integrity.store.versions import VersionStore

SHIPPED = Path(__file__).resolve().parents[2] / "demo" / "models" / "shapes-clip.pt"
PICKLE_MAGIC = tuple(bytes([0x80, protocol]) for protocol in range(2, 6))


class _Payload:
    """Pickles to a call that creates ``marker``: proof of code run at load time."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@pytest.fixture
def hostile_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "code-ran"
    path = tmp_path / "hostile.pt"
    torch.save({"format": "sft-demo-vqa/1", "state_dict": _Payload(marker)}, path)
    return path, marker


def test_shipped_weights_load_with_weights_only():
    state = torch.load(SHIPPED, map_location="cpu", weights_only=True)
    assert state and all(isinstance(value, torch.Tensor) for value in state.values())


def test_hostile_demo_checkpoint_is_refused_without_running_code(hostile_checkpoint):
    path, marker = hostile_checkpoint
    with pytest.raises(TrainerError, match="not a loadable checkpoint") as error:
        load_checkpoint(path)
    assert str(path) in str(error.value)
    assert not marker.exists()


def test_hostile_encoder_weights_never_run_code(hostile_checkpoint):
    from integrity.detect.encoder import Encoder
    from integrity.detect.encoder_config import EncoderError

    path, marker = hostile_checkpoint
    with pytest.raises(EncoderError, match="Weights only load failed") as error:
        Encoder(demo_encoder_config(pretrained=str(path), device="cpu"))
    assert str(path) in str(error.value)
    assert not marker.exists()


def _pickles(root: Path) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        with path.open("rb") as handle:
            head = handle.read(2)
        if head in PICKLE_MAGIC or path.suffix in (".pkl", ".pickle", ".pt", ".pth", ".bin"):
            found.append(path)
    return found


def test_ingest_store_and_cache_write_no_pickle(tmp_path: Path, make_png):
    image = make_png()
    rows = [{"id": str(i), "image": {"bytes": image, "path": None},
             "conversations": [{"from": "human", "value": "<image>\nWhat?"},
                               {"from": "gpt", "value": "A square."}]} for i in range(3)]
    rows.append({"id": "bad", "image": {"bytes": b"not an image", "path": None},
                 "conversations": rows[0]["conversations"]})
    data = tmp_path / "data.parquet"
    pq.write_table(pa.Table.from_pylist(rows), data)
    store = VersionStore(str(tmp_path / "store"))
    result, manifest = ingest_to_store(SourceConfig(name="emb", uri=str(data)), store)
    assert (result.accepted.height, result.quarantine.height) == (3, 1)
    store.attach("raw_sft", manifest.version, "note.txt", "attached")
    cache = EmbeddingCache(str(tmp_path / "store" / "embeddings"))
    cache.put("shapes-clip", "image", result.accepted["image_sha256"].list.first().to_list()[:1],
              np.full((1, 4), 0.5, dtype=np.float32))

    written = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    suffixes = {p.suffix for p in written}
    assert {".parquet", ".json", ".png", ".txt"} <= suffixes, suffixes  # it did write all kinds
    assert any(Path(store.blob_root) in p.parents for p in written)
    assert _pickles(tmp_path / "store") == []
