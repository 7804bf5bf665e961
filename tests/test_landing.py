"""Landing-zone keys -> sources: ready only with a marker, one data file per shard."""

from integrity.landing import landed_sources, unready_reasons

KEYS = [
    "vendor/s1/data.jsonl", "vendor/s1/images/a.png", "vendor/s1/_SUCCESS",
    "vendor/s2/data.jsonl",                                   # no marker yet
    "vendor/s3/a.jsonl", "vendor/s3/b.json", "vendor/s3/_SUCCESS",  # two data files
    "other/x1/part.parquet", "other/x1/_SUCCESS",
    "loose.jsonl", "bad name/s1/_SUCCESS",
]


def test_ready_shards_become_sources_rooted_at_their_folder():
    sources = landed_sources("s3://bucket/zone/", KEYS)
    assert [source.name for source in sources] == ["other.x1", "vendor.s1"]
    vendor = sources[1]
    assert vendor.uri == "s3://bucket/zone/vendor/s1/data.jsonl"
    assert vendor.image_root == "s3://bucket/zone/vendor/s1"


def test_a_marked_shard_that_cannot_be_one_source_says_why():
    assert unready_reasons("/landing", KEYS) == {
        "vendor.s3": "2 data files in /landing/vendor/s3 (need exactly one)"}
