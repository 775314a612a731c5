"""Regenerating the golden file appends its note to the history instead of overwriting the last one."""

from __future__ import annotations

import torch

from .golden.regenerate import notes_history


def test_a_new_note_is_appended_and_the_old_ones_kept():
    old_style = {"note": "first reason", "made_with": {"torch": "2.0"}}
    notes = notes_history(old_style, "second reason")
    assert [n["note"] for n in notes] == ["first reason", "second reason"]
    assert notes[1]["torch"] == torch.__version__ and notes[1]["date"]
    again = notes_history({"notes": notes}, "third")
    assert [n["note"] for n in again] == ["first reason", "second reason", "third"]
    assert notes_history({"notes": notes}, "") == notes  # no note given: the history is unchanged
