from __future__ import annotations

import copy
import dataclasses
import math
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skylab.store.notes import NOTE_FIELDS, Decision, NoteFormatError, Status, TrialNote


def full_note(**changes: object) -> TrialNote:
    note = TrialNote(
        trial=7,
        tag="mar28",
        status=Status.SUCCESS,
        decision=Decision.KEEP,
        metric="val_bpb",
        value=0.9979,
        peak_vram_mb=45060.2,
        strategy="llm",
        parent="a" * 40,
        started_at="2026-11-25T01:02:03Z",
        train_seconds=300.1,
        wall_seconds=325.9,
        description="raise MATRIX_LR to 0.05",
        params={"DEPTH": 10, "MATRIX_LR": 0.05, "NAME": "x", "FLAG": True},
        summary={"mfu_percent": 39.8, "num_steps": 953},
    )
    for key, value in changes.items():
        setattr(note, key, value)
    return note


def test_note_reads_as_key_value_lines() -> None:
    text = full_note().format()
    assert text.splitlines()[:8] == [
        "skylab-note: 1",
        "trial: 7",
        "tag: mar28",
        "status: success",
        "decision: keep",
        "metric: val_bpb",
        "val_bpb: 0.9979",
        "peak_vram_mb: 45060.2",
    ]
    assert "description: raise MATRIX_LR to 0.05" in text
    assert "param.DEPTH: 10" in text
    assert 'param.NAME: "x"' in text


@pytest.mark.parametrize(
    "description",
    [
        "",
        "  padded  ",
        'starts with "quote',
        "two\nlines",
        "tab\there",
        "carriage\rreturn",
        "unicode line sep\u2028and para\u2029",
        "emoji 🚀 and accents é",
        "key: value inside",
        "<script>alert(1)</script>",
        "\\backslash\\",
        "nul\x00byte",
        "ends with colon:",
    ],
)
def test_odd_descriptions_round_trip_exactly(description: str) -> None:
    note = full_note(description=description, tag="t-1.x")
    assert TrialNote.parse(note.format()) == note


@given(
    description=st.text(),
    strategy=st.text(),
    value=st.floats(allow_nan=False),
    params=st.dictionaries(
        st.from_regex(r"[A-Z_][A-Z0-9_]{0,10}", fullmatch=True),
        st.one_of(st.integers(), st.floats(allow_nan=False), st.text(), st.booleans()),
        max_size=4,
    ),
)
def test_any_text_and_numbers_round_trip(
    description: str, strategy: str, value: float, params: dict[str, int | float | str | bool]
) -> None:
    note = full_note(description=description, strategy=strategy, value=value, params=params)
    assert TrialNote.parse(note.format()) == note


def test_missing_values_are_omitted_and_read_back_as_none() -> None:
    note = full_note(status=Status.CRASH, decision=Decision.REVERT, value=None, peak_vram_mb=None)
    text = note.format()
    assert "val_bpb:" not in text
    assert TrialNote.parse(text) == note


def test_nan_metric_round_trips() -> None:
    parsed = TrialNote.parse(full_note(value=math.nan).format())
    assert parsed.value is not None and math.isnan(parsed.value)


def test_unknown_keys_from_a_newer_skylab_are_kept() -> None:
    text = full_note().format() + "tokens_in: 1234\nhost: gpu-box-3\n"
    parsed = TrialNote.parse(text)
    assert parsed.other == {"tokens_in": "1234", "host": "gpu-box-3"}
    assert TrialNote.parse(parsed.format()) == parsed


@pytest.mark.parametrize(
    "text, problem",
    [
        ("just some note a human wrote\n", "not 'key: value'"),
        ("trial: 1\ntag: x\n", "not a Skylab note"),
        ("skylab-note: 1\ntag: x\nstatus: success\ndecision: keep\nmetric: m\n", "missing 'trial'"),
        ("skylab-note: 1\ntrial: 1\ntag: x\nstatus: exploded\ndecision: keep\nmetric: m\n", "exploded"),
    ],
)
def test_foreign_notes_are_rejected_clearly(text: str, problem: str) -> None:
    with pytest.raises(NoteFormatError, match=problem):
        TrialNote.parse(text)


def test_a_note_pickles_and_copies_field_for_field() -> None:
    note = full_note(other={"ran_by": "alice"}, measurements=[1.0, 2.0], seeds=[0, 1])
    assert pickle.loads(pickle.dumps(note)) == note
    assert copy.deepcopy(note) == note and copy.copy(note) == note
    assert [f.name for f in dataclasses.fields(TrialNote)] == list(NOTE_FIELDS)
