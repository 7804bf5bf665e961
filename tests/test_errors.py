"""What the user can fix (integrity/errors.py): credentials redacted from URIs, UserError messages,
and which errors get a one-line message (the user's) and which stay bugs (a traceback)."""

from __future__ import annotations

import errno

import botocore.exceptions
import pytest

from integrity.errors import UserError, redact, user_message
from integrity.ingest import IngestError


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("s3://AKIA123:s3cr3t@minio.local:9000/bucket/a.json",
         "s3://***@minio.local:9000/bucket/a.json"),
        ("fetching https://ana@example.org/data.jsonl failed",
         "fetching https://***@example.org/data.jsonl failed"),
        ("https://b.s3.amazonaws.com/a.json?X-Amz-Credential=AKIA%2F2024&X-Amz-Date=20240101"
         "&X-Amz-Signature=abc123",
         "https://b.s3.amazonaws.com/a.json?X-Amz-Credential=***&X-Amz-Date=20240101"
         "&X-Amz-Signature=***"),
        ("https://h/x?token=t0k&page=2&api_key=k3y#top", "https://h/x?token=***&page=2&api_key=***#top"),
        ("https://h/x?PASSWORD=p&user=ana", "https://h/x?PASSWORD=***&user=ana"),
        ("https://ana:pw@host/x.json?X-Amz-Signature=abc: file not found",
         "https://***@host/x.json?X-Amz-Signature=***: file not found"),
        ("cannot read 'https://h/x?token=t0k', (see https://h/y?api_key=k3y).",
         "cannot read 'https://h/x?token=***', (see https://h/y?api_key=***)."),
        ("https://h/x?token=a:b,c&page=2", "https://h/x?token=***&page=2"),
    ],
    ids=["user-and-password", "user-only", "presigned-url", "token-and-key", "any-case",
         "colon-after-the-uri", "quote-comma-bracket-full-stop-after-the-uri",
         "punctuation-inside-the-value"],
)
def test_redact_hides_credentials_a_uri_carries_and_nothing_else(text, redacted):
    assert redact(text) == redacted


@pytest.mark.parametrize(
    "text",
    ["/data/llava/a.json", "s3://bucket/key@v2/a.json", "write to ana@example.org",
     "https://h/x?page=2&sort=name", "line 3: key 'password' repeated"],
    ids=["path", "at-sign-in-a-key", "email-without-scheme", "plain-query", "plain-text"],
)
def test_redact_leaves_text_without_credentials_as_it_is(text):
    assert redact(text) == text


def test_a_user_error_never_carries_the_credentials_of_a_uri_in_its_message():
    error = IngestError("cannot read s3://key:secret@host/b/a.json?token=t (timed out)")
    assert str(error) == "cannot read s3://***@host/b/a.json?token=*** (timed out)"
    assert isinstance(error, UserError)


def test_the_message_of_a_user_error_is_its_text():
    assert user_message(IngestError("a.json: file not found")) == "a.json: file not found"
    assert user_message(UserError()) == ""


@pytest.mark.parametrize(
    ("code", "message"),
    [(errno.ENOSPC, "no space left on the device"), (errno.EDQUOT, "disk quota exceeded"),
     (errno.EACCES, "permission denied"), (errno.EROFS, "read-only file system")],
)
def test_the_machines_os_conditions_are_one_line_naming_the_file(code, message):
    assert user_message(OSError(code, "os text", "/store/raw_sft/x.parquet")) == \
        f"{message}: /store/raw_sft/x.parquet"
    assert user_message(OSError(code, "os text")) == message  # no file: no ": None"


def test_the_file_an_os_error_names_is_redacted():
    error = OSError(errno.EACCES, "denied", "s3://k:secret@host/bucket/x")
    assert user_message(error) == "permission denied: s3://***@host/bucket/x"


def test_missing_s3_credentials_say_which_variables_to_set():
    message = user_message(botocore.exceptions.NoCredentialsError())
    assert message.startswith("S3: Unable to locate credentials")
    assert "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY" in message
    assert "AWS_ENDPOINT_URL" in message
    wrong_endpoint = botocore.exceptions.EndpointConnectionError(
        endpoint_url="http://user:pw@minio:9000")
    assert user_message(wrong_endpoint).startswith(
        'S3: Could not connect to the endpoint URL: "http://***@minio:9000"')


@pytest.mark.parametrize(
    "error",
    [ValueError("an internal invariant broke"), KeyError("rows_in"),
     OSError(errno.ENOENT, "No such file or directory", "/x"), RuntimeError("boom")],
    ids=["ValueError", "KeyError", "other-os-error", "RuntimeError"],
)
def test_every_other_error_is_a_bug_with_no_user_message(error):
    assert user_message(error) is None
