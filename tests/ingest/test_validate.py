"""The row-level contracts of raw_sft as polars expressions (integrity/ingest/validate.py): roles,
alternation, empty answers, <image> tokens against images, and the first contract a row breaks."""

from __future__ import annotations

import polars as pl
import pytest

from integrity.ingest.schema import TURN, QuarantineReason
from integrity.ingest.validate import (
    dialog_roles,
    empty_answers,
    first_violation,
    image_count,
    image_token_count,
    roles,
    roles_alternate,
    unknown_roles,
)

R = QuarantineReason


def frame(*rows: tuple[list[tuple[str, str]], list[str]]) -> pl.DataFrame:
    """Rows of (turns as (role, content) pairs, image refs), typed as raw_sft types them."""
    return pl.DataFrame(
        {"turns": [[{"role": role, "content": content} for role, content in turns]
                   for turns, _ in rows],
         "images": [images for _, images in rows]},
        schema={"turns": pl.List(TURN), "images": pl.List(pl.String)},
    )


def one(turns: list[tuple[str, str]], images: list[str] | None = None) -> pl.DataFrame:
    return frame((turns, images or []))


def column(data: pl.DataFrame, expression: pl.Expr) -> list:
    return data.select(expression)[:, 0].to_list()


QA = [("user", "Q?"), ("assistant", "A.")]


def test_roles_lists_every_turn_role_in_order_and_dialog_roles_leaves_out_system_turns():
    data = one([("system", "Be brief."), ("user", "Q?"), ("assistant", "A."),
                ("user", "Q2?"), ("assistant", "A2.")])
    assert column(data, roles()) == [["system", "user", "assistant", "user", "assistant"]]
    assert column(data, dialog_roles()) == [["user", "assistant", "user", "assistant"]]


def test_unknown_roles_are_the_roles_outside_system_user_assistant_and_none_when_all_known():
    data = frame((QA, []), ([("user", "Q?"), ("bot", "A."), ("tool", "x"), ("User", "y")], []))
    assert column(data, unknown_roles()) == [[], ["bot", "tool", "User"]]


@pytest.mark.parametrize(
    ("turns", "alternate"),
    [
        (QA, True),
        ([("system", "Be brief."), *QA, *QA], True),
        ([*QA, ("system", "mid-dialog instructions"), *QA], True),
        ([("user", "Q?")], False),                                  # no answer at all
        ([*QA, ("user", "Q2?")], False),                            # ends on a question
        ([("assistant", "A."), ("user", "Q?")], False),             # answer first
        ([("user", "Q?"), ("user", "Q2?"), ("assistant", "A."), ("assistant", "A2.")], False),
        ([("system", "Be brief.")], False),                         # system only
        ([], False),
        # One role that spells a whole round, with the separator the check joins roles by.
        ([("user\x1fassistant", "Q?"), ("user\x1fassistant", "A.")], False),
    ],
    ids=["qa", "system-then-two-rounds", "system-inside", "question-only", "ends-on-question",
         "answer-first", "two-users-then-two-answers", "system-only", "empty",
         "a-role-holding-the-separator"],
)
def test_roles_alternate_only_for_user_assistant_rounds_that_end_with_an_answer(turns, alternate):
    assert column(one(turns), roles_alternate()) == [alternate]


def test_empty_answers_counts_assistant_turns_without_text_whitespace_included():
    data = frame(
        (QA, []),
        ([("user", "Q?"), ("assistant", ""), ("user", "Q2?"), ("assistant", " \n\t ")], []),
        ([("user", ""), ("assistant", "A.")], []),  # an empty question is not an empty answer
    )
    assert column(data, empty_answers()) == [0, 2, 0]


def test_image_tokens_are_counted_over_every_turn_and_images_over_the_row():
    data = frame(
        ([("user", "<image>\n<image>\nWhich is brighter?"), ("assistant", "The <image> second.")],
         ["a.png", "b.png"]),
        (QA, []),
        ([("user", "<Image> <images>"), ("assistant", "none")], ["c.png"]),  # not the token
    )
    assert column(data, image_token_count()) == [3, 0, 0]
    assert column(data, image_count()) == [2, 0, 1]


def test_a_row_that_holds_every_contract_has_no_reason_and_no_detail():
    checked = first_violation(frame(
        ([("user", "<image>\nWhat is it?"), ("assistant", "A square.")], ["a.png"]),
        ([("system", "Be brief."), *QA], []),
    ))
    assert checked["reason"].to_list() == [None, None]
    assert checked["detail"].to_list() == [None, None]
    assert checked.columns == ["turns", "images", "reason", "detail"]  # the row is kept as is


@pytest.mark.parametrize(
    ("turns", "images", "reason", "detail"),
    [
        ([("user", "Q?"), ("bot", "A."), ("oracle", "B.")], [], R.UNKNOWN_ROLE,
         "unknown roles: bot, oracle"),
        ([("user", "Q?"), ("user", "Q2?"), ("assistant", "A.")], [], R.ROLES_NOT_ALTERNATING,
         "roles: user > user > assistant"),
        ([("user", "<image> What is it?"), ("assistant", "A square.")], [],
         R.IMAGE_TOKEN_MISMATCH, "1 <image> tokens for 0 images"),
        ([("user", "What is it?"), ("assistant", "A square.")], ["a.png", "b.png"],
         R.IMAGE_TOKEN_MISMATCH, "0 <image> tokens for 2 images"),
        ([*QA, ("user", "And?"), ("assistant", "   ")], [], R.EMPTY_ANSWER,
         "1 empty assistant answer(s): nothing to learn"),
    ],
    ids=["unknown-role", "not-alternating", "token-without-image", "images-without-token",
         "empty-answer"],
)
def test_a_row_that_breaks_a_contract_gets_its_reason_and_a_detail_saying_what(
        turns, images, reason, detail):
    checked = first_violation(one(turns, images))
    assert checked.row(0, named=True)["reason"] == reason.value
    assert checked.row(0, named=True)["detail"] == detail


def test_the_first_broken_contract_wins_in_the_documented_order():
    """unknown role, then alternation, then image tokens, then empty answers."""
    unknown_and_unalternating = [("bot", "x"), ("bot", "y"), ("assistant", "")]
    unalternating_and_mismatched = [("user", "<image>"), ("user", "q"), ("assistant", "")]
    mismatched_and_empty = [("user", "<image> q"), ("assistant", "")]
    checked = first_violation(frame((unknown_and_unalternating, []),
                                    (unalternating_and_mismatched, []),
                                    (mismatched_and_empty, [])))
    assert checked["reason"].to_list() == [R.UNKNOWN_ROLE.value, R.ROLES_NOT_ALTERNATING.value,
                                           R.IMAGE_TOKEN_MISMATCH.value]
    assert checked["detail"][1] == "roles: user > user > assistant"


def test_each_row_is_judged_on_its_own():
    checked = first_violation(frame(
        (QA, []),
        ([("user", "Q?")], []),
        (QA, ["stray.png"]),
        (QA, []),
    ))
    assert checked["reason"].to_list() == [None, R.ROLES_NOT_ALTERNATING.value,
                                           R.IMAGE_TOKEN_MISMATCH.value, None]
