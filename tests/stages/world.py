"""A tiny world for the stage tests: images on disk, a LLaVA JSON-lines source holding one row of
each flaw the default policy acts on (and one broken record), a clean ShareGPT source.

The LLaVA source, audited under the default policy (with or without a model):

- ``img-0`` .. ``img-7`` (image rows, each its own image) and ``txt-0`` .. ``txt-5`` (text
  rows) are kept, except ``img-1``;
- ``copy-of-img-0`` repeats ``img-0`` word for word: dropped (duplicate);
- ``contra-1`` asks ``img-1``'s question of its image with another answer: both held for
  review (contradiction);
- ``judge`` is a preference judgement flattened into SFT: dropped (preference_pollution);
- ``no-dialog`` has no conversation: quarantined at ingest (missing_field).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from integrity.decide.policy import Policy, load_policy
from integrity.ingest import SourceConfig
from integrity.store.versions import Manifest, VersionStore

COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220),
          "yellow": (230, 220, 30)}
LLAVA_RECORDS = 18
LLAVA_ACCEPTED = 17
KEPT = {f"img-{n}" for n in range(8) if n != 1} | {f"txt-{n}" for n in range(6)}
REVIEW = {"img-1", "contra-1"}
DROPPED = {"copy-of-img-0": ["duplicate"], "judge": ["preference_pollution"]}


def _image(path: Path, seed: int, color: str) -> None:
    """A 48x48 image of random colour blocks with a coloured square: sharp, no defect, and no
    near copy of another image of the world."""
    blocks = np.random.default_rng(seed).integers(0, 256, (4, 4, 3)).astype(np.uint8)
    pixels = np.kron(blocks, np.ones((12, 12, 1), dtype=np.uint8))
    offset = seed % 12
    pixels[8 + offset:30 + offset, 10:34] = COLORS[color]
    Image.fromarray(pixels).save(path)


def _llava_image_row(example_id: str, image: int, answer: str) -> dict:
    return {"id": example_id, "image": f"images/{image}.png", "conversations": [
        {"from": "human", "value": "<image>\nWhat color is the square?"},
        {"from": "gpt", "value": f"{answer.capitalize()}."}]}


def llava_records() -> list[dict]:
    colors = list(COLORS)
    records = [_llava_image_row(f"img-{n}", n, colors[n % 4]) for n in range(8)]
    records += [{"id": f"txt-{n}", "conversations": [
        {"from": "human", "value": f"What is {n} plus {n + 3}?"},
        {"from": "gpt", "value": f"{2 * n + 3}."}]} for n in range(6)]
    records.append(_llava_image_row("copy-of-img-0", 0, colors[0]))
    records.append(_llava_image_row("contra-1", 1, "blue"))
    records.append({"id": "judge", "conversations": [
        {"from": "human", "value": "Which answer is better?"},
        {"from": "gpt", "value": "Response A is better than Response B."}]})
    records.append({"id": "no-dialog"})
    assert len(records) == LLAVA_RECORDS
    return records


def sharegpt_records() -> list[dict]:
    colors = list(COLORS)
    records = [{"id": f"s-img-{n}", "images": [f"images/{8 + n}.png"], "messages": [
        {"role": "user", "content": "<image>Which color is the square here?"},
        {"role": "assistant", "content": f"It is {colors[(n + 1) % 4]}."}]} for n in range(4)]
    records += [{"id": f"s-txt-{n}", "messages": [
        {"role": "user", "content": f"Spell {word} backwards."},
        {"role": "assistant", "content": word[::-1]}]}
        for n, word in enumerate(["cat", "house", "river", "stone"])]
    return records


def write_llava(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


@dataclass
class World:
    root: Path
    store: VersionStore
    policy: Policy
    llava: SourceConfig
    sharegpt: SourceConfig
    extra: list[SourceConfig] = field(default_factory=list)  # sources added by a test

    @property
    def sources(self) -> list[SourceConfig]:
        return [self.llava, self.sharegpt, *self.extra]


def make_world(root: Path) -> World:
    """The world's files under ``root`` and an empty store beside them."""
    (root / "images").mkdir(parents=True)
    colors = list(COLORS)
    for n in range(8):
        _image(root / "images" / f"{n}.png", n, colors[n % 4])
    for n in range(4):
        _image(root / "images" / f"{8 + n}.png", 100 + n, colors[(n + 1) % 4])
    write_llava(root / "llava.jsonl", llava_records())
    (root / "sharegpt.json").write_text(json.dumps(sharegpt_records()))
    return World(
        root=root, store=VersionStore(str(root / "store")), policy=load_policy(),
        llava=SourceConfig(name="llava", uri=str(root / "llava.jsonl")),
        sharegpt=SourceConfig(name="sharegpt", uri=str(root / "sharegpt.json"),
                              format="sharegpt"))


def archive_source(world: World) -> SourceConfig:
    """A third LLaVA source, "archive" (its name sorts before the others'), holding ``a-2``, a
    word-for-word copy of the LLaVA source's ``img-2``, and one row of its own."""
    records = [{**_llava_image_row("a-2", 2, list(COLORS)[2]), "id": "a-2"},
               {"id": "a-txt", "conversations": [
                   {"from": "human", "value": "Name a prime number."},
                   {"from": "gpt", "value": "Seven."}]}]
    write_llava(world.root / "archive.jsonl", records)
    world.extra.append(SourceConfig(name="archive", uri=str(world.root / "archive.jsonl")))
    return world.extra[-1]


def index_sources(world: World) -> None:
    """Bring the duplicate index of every scored source of the world up to date, as
    ``integrity audit`` does before it audits."""
    from integrity.stages.index import update_index

    update_index(world.store, {source.name: {} for source in world.sources})


def audit_source(world: World, source: SourceConfig, *, encoder=None,
                 **options) -> tuple[Manifest, Manifest, Manifest]:
    """Ingest, score, index and audit ``source`` as the CLI does (copies of rows another source
    holds first dropped; no report); its raw, scored and audited manifests."""
    from integrity.stages import audit_to_store, ingest_to_store, score_to_store
    from integrity.stages.audit import cross_source_copies

    _, raw = ingest_to_store(source, world.store)
    _, scored, _ = score_to_store(source, raw.version, world.store, encoder=encoder)
    index_sources(world)
    copies = cross_source_copies(world.store, source.name, scored.version,
                                 [other.name for other in world.sources], world.policy)
    _, audited, _ = audit_to_store(source.name, scored.version, world.store, world.policy,
                                   report=False, copies=copies, **options)
    return raw, scored, audited
