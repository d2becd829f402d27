"""Task selection of auto-annotation: ``--filter`` expressions and which tasks count as done."""
from __future__ import annotations

import pytest

from backend.labelstudio.task_selection import TaskFilter, has_version


def test_task_filter():
    tasks = [{"id": i, "total_annotations": i % 2, "data": {"image": f"/data/upload/1/x-{name}"}}
             for i, name in enumerate(["teddy.jpg", "banana1.png", "banana2.png", "llama.png"], start=1)]

    def chosen(*expressions: str) -> list[int]:
        flt = TaskFilter.parse(expressions)
        return [t["id"] for t in tasks if flt.matches(t)]

    assert chosen() == [1, 2, 3, 4]
    assert chosen("id=1,3-4") == [1, 3, 4]
    assert chosen("annotated=yes") == [1, 3]
    assert chosen("annotated=no", "image~banana") == [2]
    assert chosen("id=2-3", "image~banana", "annotated=true") == [3]
    assert chosen("missing~x") == []
    for bad in ("id=a", "annotated=maybe", "image~(", "nonsense", "~x"):
        with pytest.raises(ValueError, match="bad --filter"):
            TaskFilter.parse([bad])


def test_has_version_reads_the_listed_prediction_versions():
    assert has_version({"predictions_model_versions": " x,fcanet-lite0-default,v2"}, "fcanet-lite0-default")
    assert not has_version({"predictions_model_versions": "fcanet-lite0-default-2"}, "fcanet-lite0-default")
    assert not has_version({"predictions_model_versions": ""}, "v1")
    listed = {"predictions_model_versions": "v1", "predictions": [{"model_version": "v1", "result": []}]}
    assert not has_version(listed, "v1"), "an empty prediction is not done"
    listed["predictions"].append({"model_version": "v1", "result": [{"type": "brushlabels"}]})
    assert has_version(listed, "v1")
