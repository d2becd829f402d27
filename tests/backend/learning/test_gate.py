"""The promotion gate: the held-out split (the rule itself: test_evidence.py)."""
from __future__ import annotations

from pathlib import Path

from backend.learning import split_examples
from backend.storage.examples import ExampleStore
from tests.support.learning import PROJECT, put_examples


def test_split_is_deterministic_by_annotation_and_stable_as_data_grows(tmp_path: Path, horses) -> None:
    put_examples(tmp_path, horses * 5, range(1, 31))
    examples = ExampleStore(tmp_path / "examples").examples(PROJECT)
    train, held = split_examples(examples, 0.2)
    again = split_examples(list(reversed(examples)), 0.2)
    assert ({e.key for e in again[0]}, {e.key for e in again[1]}) == ({e.key for e in train}, {e.key for e in held})
    assert {e.key for e in train} | {e.key for e in held} == {e.key for e in examples}
    assert 1 <= len(held) < len(examples) and not {e.annotation_id for e in train} & {e.annotation_id for e in held}
    fewer_train, fewer_held = split_examples(examples[:20], 0.2)
    assert {e.key for e in fewer_held} <= {e.key for e in held}
    assert {e.key for e in fewer_train} <= {e.key for e in train}
    two_train, two_held = split_examples(examples[:2], 0.2)
    assert len(two_train) == len(two_held) == 1
