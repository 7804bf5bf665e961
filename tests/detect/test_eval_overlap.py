"""Eval-set keys (eval_overlap.eval_overlap_keys): the image sha256s and normalised questions of
every eval set, read with the same readers as the sources, and an error for an eval set that
yields nothing to compare against."""

import json

import pytest
from PIL import Image

from integrity.detect.eval_overlap import eval_overlap_keys
from integrity.detect.pairs import qa_pairs
from integrity.ingest import IngestError, SourceConfig
from integrity.store.versions import VersionStore
from tests.detect.conftest import make_raw, save_image


def _llava(folder, records: list[dict]) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "data.json"
    path.write_text(json.dumps(records))
    return str(path)


def _record(record_id: str, question: str, answer: str, image: str | None = None) -> dict:
    prefix = "<image>\n" if image else ""
    record = {"id": record_id, "conversations": [{"from": "human", "value": prefix + question},
                                                 {"from": "gpt", "value": answer}]}
    return {**record, "image": image} if image else record


def test_the_keys_are_every_eval_sets_images_and_normalised_questions(tmp_path):
    first, second = tmp_path / "mmbench", tmp_path / "pope"
    (first / "images").mkdir(parents=True)
    (second / "images").mkdir(parents=True)
    _, red = save_image(first / "images" / "red.png", Image.new("RGB", (32, 32), "red"))
    _, blue = save_image(first / "images" / "blue.png", Image.new("RGB", (32, 32), "blue"))
    # the same red image stored again by the second eval set: one key
    save_image(second / "images" / "r.png", Image.new("RGB", (32, 32), "red"))
    _, green = save_image(second / "images" / "g.png", Image.new("RGB", (32, 32), "green"))
    eval_sets = [
        SourceConfig(name="mmbench", uri=_llava(first, [
            _record("1", "What color is the square?", "Red.", "images/red.png"),
            _record("2", "What COLOR is the square??", "Blue.", "images/blue.png"),
            _record("3", "What is the capital of France?", "Paris.")])),
        SourceConfig(name="pope", uri=_llava(second, [
            _record("1", "Is there a red square in the image?", "Yes.", "images/r.png"),
            _record("2", "Is there a green square in the image?", "Yes.", "images/g.png")])),
    ]
    images, questions = eval_overlap_keys(eval_sets, VersionStore(str(tmp_path / "store")))
    assert images == {red, blue, green}
    assert questions == {"what color is the square", "what is the capital of france",
                         "is there a red square in the image",
                         "is there a green square in the image"}


def test_a_training_question_worded_with_other_case_and_punctuation_meets_its_key(tmp_path):
    folder = tmp_path / "eval"
    eval_set = SourceConfig(name="eval", uri=_llava(folder, [
        _record("1", "How many legs does a spider have?", "Eight.")]))
    _, questions = eval_overlap_keys([eval_set], VersionStore(str(tmp_path / "store")))
    training = qa_pairs(make_raw([
        {"id": "copy", "qa": [("how many LEGS does a spider have ?!", "8")]},
        {"id": "other", "qa": [("How many legs does an ant have?", "Six.")]}]))
    assert [q in questions for q in training["question_norm"]] == [True, False]


def test_no_eval_sets_give_no_keys(tmp_path):
    assert eval_overlap_keys([], VersionStore(str(tmp_path / "store"))) == (set(), set())


def test_an_empty_eval_set_is_an_error_not_an_overlap_of_zero(tmp_path):
    folder = tmp_path / "empty"
    good = SourceConfig(name="good", uri=_llava(tmp_path / "good", [_record("1", "Q?", "A.")]))
    empty = SourceConfig(name="empty", uri=_llava(folder, []))
    with pytest.raises(IngestError, match=r"eval set empty \(.*data.json\) yields no row to "
                                          r"compare against: 0 records, quarantined none"):
        eval_overlap_keys([good, empty], VersionStore(str(tmp_path / "store")))
