"""What the user can fix, apart from what is the tool's own bug.

Every error a user causes and can act on (a bad file, a missing image, a store changed on disk, a
model that will not load) derives from ``UserError``: the CLI prints it as one line,
``integrity: error: ...``, and exits 2. Anything else is a bug in sft-integrity: it keeps its
traceback and exits 1, so it is never reported as the user's mistake.
"""

from __future__ import annotations

import errno
import re

# scheme://user:secret@host and secret-bearing query parameters (presigned URLs, tokens). A
# value ends at & # or a space, or before the punctuation that ends the URI in a sentence
# ("...?X-Amz-Signature=abc: not found", "('...?token=t')."): that stays in the text.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")
_SECRET_QUERY = re.compile(
    r"(?P<name>[?&](?:[^=&\s]*(?:token|signature|secret|password|passwd|credential|key)"
    r"[^=&\s]*))=[^&\s#]*?(?=[.,:;!?)\]}>'\"]*(?:[&\s#]|$))", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with the credentials URIs can carry replaced by ``***``: the user and password
    of ``scheme://user:password@host``, and query values named like tokens, signatures, keys or
    passwords. Applied wherever a URI is recorded or printed (manifests, errors, quarantine)."""
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    return _SECRET_QUERY.sub(r"\g<name>=***", text)


class UserError(Exception):
    """A failure the user caused and can fix; its message says what and where (with any
    credentials a URI in it carried redacted)."""

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(redact(str(message)), *args)


# OS conditions that are the machine's, not the tool's: reported in one line, exit 2.
_OS_CAUSES = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EROFS: "read-only file system",
}


def user_message(error: BaseException) -> str | None:
    """The one-line message for an error the user can act on, or None for a bug."""
    if isinstance(error, UserError):
        return str(error)
    if isinstance(error, OSError) and error.errno in _OS_CAUSES:
        where = f": {redact(str(error.filename))}" if error.filename else ""
        return f"{_OS_CAUSES[error.errno]}{where}"
    # S3 without credentials or with a wrong endpoint (botocore, through s3fs)
    names = {cls.__name__ for cls in type(error).__mro__}
    if names & {"NoCredentialsError", "PartialCredentialsError", "EndpointConnectionError",
                "NoRegionError", "InvalidEndpointError"}:
        return (f"S3: {redact(str(error))} (set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, and "
                "AWS_ENDPOINT_URL for a non-AWS server)")
    return None
