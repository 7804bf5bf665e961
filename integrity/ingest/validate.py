"""Row-level contracts of raw_sft as polars expressions (used by ingest and the GX suite).

Each expression works over a frame with ``turns`` (list of {role, content}) and ``images``.
"""

from __future__ import annotations

import polars as pl
import polars.selectors as cs

from integrity.ingest.schema import IMAGE_TOKEN, ROLES, QuarantineReason

_role = pl.element().struct.field("role")


def roles() -> pl.Expr:
    return pl.col("turns").list.eval(_role)


def dialog_roles() -> pl.Expr:
    """Roles without system turns: what must alternate user/assistant."""
    return pl.col("turns").list.eval(_role.filter(_role != "system"))


def unknown_roles() -> pl.Expr:
    """The roles of a row that are not one of ROLES (empty list when all are known)."""
    return roles().list.eval(pl.element().filter(~pl.element().is_in(ROLES)))


_SEPARATOR = "\x1f"  # joins a dialog's roles; a role holding it is caught by the count below


def roles_alternate() -> pl.Expr:
    """True when the dialog is user, assistant, user, assistant, ... and ends with an answer.

    One regular expression over the roles joined (gather_every over lists took 4x as long)."""
    dialog = dialog_roles()
    joined = dialog.list.join(_SEPARATOR)
    return (
        (dialog.list.len() >= 2)
        & (joined.str.count_matches(_SEPARATOR, literal=True) == dialog.list.len() - 1)
        & joined.str.contains(f"^user{_SEPARATOR}assistant({_SEPARATOR}user{_SEPARATOR}assistant)*$")
    )


def empty_answers() -> pl.Expr:
    """How many assistant turns of a row have no text (whitespace only counts as none)."""
    turn = pl.element().struct
    return pl.col("turns").list.eval(
        (turn.field("role") == "assistant") & (turn.field("content").str.strip_chars() == "")
    ).list.sum()


def image_token_count() -> pl.Expr:
    return (
        pl.col("turns")
        .list.eval(pl.element().struct.field("content").str.count_matches(IMAGE_TOKEN, literal=True))
        .list.sum()
    )


def image_count() -> pl.Expr:
    return pl.col("images").list.len()


def first_violation(frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``reason`` and ``detail``: the first contract a row breaks, null when it holds them all."""
    unknown, alternate, tokens, images, empty = (
        pl.col(f"_contract_{name}") for name in ("unknown", "alternate", "tokens", "images", "empty"))
    return frame.with_columns(  # each contract once; reason and detail both read it
        _contract_unknown=unknown_roles(), _contract_alternate=roles_alternate(),
        _contract_tokens=image_token_count(), _contract_images=image_count(),
        _contract_empty=empty_answers(),
    ).with_columns(
        reason=pl.when(unknown.list.len() > 0)
        .then(pl.lit(QuarantineReason.UNKNOWN_ROLE.value))
        .when(~alternate)
        .then(pl.lit(QuarantineReason.ROLES_NOT_ALTERNATING.value))
        .when(tokens != images)
        .then(pl.lit(QuarantineReason.IMAGE_TOKEN_MISMATCH.value))
        .when(empty > 0)
        .then(pl.lit(QuarantineReason.EMPTY_ANSWER.value)),
        detail=pl.when(unknown.list.len() > 0)
        .then(pl.lit("unknown roles: ") + unknown.list.join(", "))
        .when(~alternate)
        .then(pl.lit("roles: ") + roles().list.join(" > "))
        .when(tokens != images)
        .then(pl.format("{} <image> tokens for {} images", tokens, images))
        .when(empty > 0)
        .then(pl.format("{} empty assistant answer(s): nothing to learn", empty)),
    ).drop(cs.starts_with("_contract_"))
