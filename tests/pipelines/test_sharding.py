import pytest

from pipelines.coco import ImageRecord, UnknownImageRows
from pipelines.regions import PlannedRegion, RegionPlan
from pipelines.sharding import build_shard_tasks, cut_shards


def _plan(image_id, box=(0.0, 0.0, 4.0, 4.0)):
    return RegionPlan(ImageRecord(image_id, f"{image_id}.jpg", 8, 8), (PlannedRegion(0, box, "image"),))


def test_shards_are_sorted_runs_of_shard_size():
    shards = cut_shards([_plan(i) for i in (9, 3, 5, 1, 7)], 2)
    assert [[p.image.image_id for p in s] for s in shards] == [[1, 3], [5, 7], [9]]
    with pytest.raises(ValueError, match="shard_size"):
        cut_shards([], 0)


def test_fingerprint_changes_only_where_inputs_change():
    plans = [_plan(i) for i in range(1, 7)]
    base = build_shard_tasks(plans, [], 2, "cfg", "weights")
    assert [t.image_ids for t in base] == [[1, 2], [3, 4], [5, 6]]
    assert [t.fingerprint for t in base] == [t.fingerprint for t in build_shard_tasks(plans[::-1], [], 2, "cfg",
                                                                                      "weights")]
    changed = plans[:3] + [_plan(4, (1.0, 1.0, 4.0, 4.0))] + plans[4:]
    moved = build_shard_tasks(changed, [], 2, "cfg", "weights")
    assert [a.fingerprint == b.fingerprint for a, b in zip(base, moved)] == [True, False, True]
    assert all(a.fingerprint != b.fingerprint for a, b in zip(base, build_shard_tasks(plans, [], 2, "cfg2", "weights")))
    assert all(a.fingerprint != b.fingerprint for a, b in zip(base, build_shard_tasks(plans, [], 2, "cfg", "w2")))


def test_orphans_go_to_the_shard_of_their_id_range():
    dangling = UnknownImageRows(61, 1, "annotations", (7,))
    tasks = build_shard_tasks([_plan(i) for i in range(10, 70, 10)], [UnknownImageRows(35, 2), UnknownImageRows(1, 1),
                                                                      dangling], 2, "c", "w")
    assert [[o.image_id for o in t.orphans] for t in tasks] == [[1], [35], [61]]
    # A dangling annotation is part of its shard's inputs: it changes that shard's fingerprint only.
    without = build_shard_tasks([_plan(i) for i in range(10, 70, 10)], [UnknownImageRows(35, 2),
                                                                        UnknownImageRows(1, 1)], 2, "c", "w")
    assert [a.fingerprint == b.fingerprint for a, b in zip(tasks, without)] == [True, True, False]
