"""The sharded-stage driver's decisions that need no pipeline: which runners get waves, how shards are cut into
pipelines, how shard stats add up, and the failure-rate gate."""
import pytest

from beam_jobs.sharded_stage import (FailureRateExceeded, StageTotals, check_failure_rate, runs_in_waves,
                                     shard_waves, summarise)

TOTALS = StageTotals(counts=("regions", "failures"), breakdowns=("failures_by_kind",), inputs="regions",
                     inputs_named="pseudo boxes")


@pytest.mark.parametrize("beam_args", [[], ["--runner", "DirectRunner"], ["--runner=direct"],
                                       ["--runner", "SwitchingDirectRunner"], ["--runner", "BundleBasedDirectRunner"],
                                       ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
                                       ["--runner=DirectRunner", "--direct_running_mode=multi_threading"],
                                       ["--runner=FnApiRunner"]])
def test_the_direct_runner_runs_in_waves(beam_args):
    assert runs_in_waves(beam_args)


@pytest.mark.parametrize("runner", ["DataflowRunner", "dataflow", "PortableRunner", "FlinkRunner", "PrismRunner",
                                    "SparkRunner", "my.company.runners.ClusterRunner"])
def test_every_other_runner_gets_one_pipeline(runner):
    assert not runs_in_waves(["--runner", runner, "--project", "p"])


def test_shard_waves():
    pending = list(range(7))
    assert shard_waves(pending, 3, in_waves=True) == [[0, 1, 2], [3, 4, 5], [6]]
    assert shard_waves(pending, 3, in_waves=False) == [pending]
    assert shard_waves(pending, 0, in_waves=True) == [pending]  # shards_per_run 0: all at once
    assert shard_waves([], 3, in_waves=True) == []


def test_summary_adds_up_counts_breakdowns_and_seconds():
    stats = [{"regions": 4, "failures": 1, "failures_by_kind": {"empty_caption": 1}, "seconds": {"caption": 0.5}},
             {"regions": 6, "failures": 2, "failures_by_kind": {"empty_caption": 1, "no_candidate": 1},
              "seconds": {"caption": 0.25, "write": 0.125}}]
    assert summarise(TOTALS, stats, computed=1, wall_seconds=2.0) == {
        "shards": 2, "shards_computed": 1, "shards_skipped": 1, "regions": 10, "failures": 3,
        "failures_by_kind": {"empty_caption": 2, "no_candidate": 1}, "seconds": {"caption": 0.75, "write": 0.125},
        "wall_seconds": 2.0}


def test_the_gate_names_the_failures_table_and_the_config_key():
    summary = {"regions": 10, "failures": 2, "failures_by_kind": {"empty_caption": 2}}
    check_failure_rate(summary, TOTALS, 0.2, "STORE", "pseudo_labels")  # 20% is not above 20%
    with pytest.raises(FailureRateExceeded) as error:
        check_failure_rate(summary, TOTALS, 0.1, "STORE", "pseudo_labels")
    assert str(error.value).startswith("2 failure rows for 10 pseudo boxes (20.0%) exceed runtime.max_failure_rate = "
                                       "10.0% (empty_caption: 2); every one is a row of the 'failures' table of STORE "
                                       "(stage pseudo_labels)")
