"""Landing-zone keys -> sources: ready only with a marker, one data file per shard."""

from integrity.ingest.landing import landed_sources, unready_reasons

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
    """A shard whose name is not a partition key was silently never ingested, and not listed."""
    keys = KEYS + ["vendor/shard 2/data.jsonl", "vendor/shard 2/_SUCCESS",
                   "vendör/s1/data.jsonl", "vendör/s1/_SUCCESS"]
    reasons = unready_reasons("/landing", keys)
    assert reasons.pop("vendor.s3") == "2 data files in /landing/vendor/s3 (need exactly one)"
    assert sorted(reasons) == ["bad name.s1", "vendor.shard 2", "vendör.s1"]
    assert all("may hold only ASCII letters, digits" in why for why in reasons.values())
    assert "vendor.shard 2" not in {source.name for source in landed_sources("/landing", keys)}


def test_a_data_file_linked_out_of_the_landing_zone_is_refused(tmp_path):
    """The link was followed: a line of its target (DB_PASSWORD=...) landed in quarantine."""
    secret = tmp_path / "secrets.env"
    secret.write_text("DB_PASSWORD=hunter2\n")
    shard = tmp_path / "landing" / "vendor" / "s1"
    shard.mkdir(parents=True)
    (shard / "data.jsonl").symlink_to(secret)
    (shard / "_SUCCESS").touch()
    keys = ["vendor/s1/data.jsonl", "vendor/s1/_SUCCESS"]
    root = str(tmp_path / "landing")
    assert landed_sources(root, keys) == []
    assert "is a link out of the landing zone" in unready_reasons(root, keys)["vendor.s1"]
