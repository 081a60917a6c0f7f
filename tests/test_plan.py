"""The plan counts everything a notebook runs: its trainings from throughput, its other work from a
measured first run scaled to this machine; the runner keeps estimate and measurement side by side."""
import json
import os
import time

import pytest

from wmlib import grid, plan, runner
from wmlib.train import trained_minutes_since

PAPER, DATASET = "bansal2022", "mnist"


@pytest.fixture
def fixed_speed(monkeypatch):
    """Every model trains at 1,000 images/s here (no timing, so the numbers are exact)."""
    monkeypatch.setattr(plan, "throughput", lambda model, dataset: (1000.0, "fixed"))
    return 1000.0


def _trainings_minutes(profile):
    cfgs = [*grid.trainings(PAPER, DATASET, profile, 0).values(), *grid.owner_trainings(PAPER, DATASET, profile, 0).values()]
    return sum(plan.images(c) for c in cfgs) / 1000.0 / 60


def test_estimate_adds_the_measured_other_work_scaled_to_this_machine(tmp_path, monkeypatch, fixed_speed):
    work = tmp_path / "work.json"
    monkeypatch.setattr(plan, "WORK_FILE", work)
    # measured on a machine that trained the host at half this one's speed: here it takes half the time
    work.write_text(json.dumps({"cpu": {f"{PAPER}-{DATASET}": {"other_minutes": 10.0, "images_per_second": 500.0,
                                                                  "host": "cifar_cnn/mnist", "ran_on": "cpu"}}}))
    est = plan.estimate(PAPER, DATASET, "cpu")
    assert est["measured"] and est["minutes"] == pytest.approx(_trainings_minutes("cpu") + 5.0)
    # a profile without a measurement counts the trainings only, and says so
    none = plan.estimate(PAPER, DATASET, "paper")
    assert not none["measured"] and none["minutes"] == pytest.approx(_trainings_minutes("paper"))
    df = plan.plan("cpu", [PAPER], [DATASET], [0], tmp_path / "out")
    nb = df[df["kind"] == "notebook"].iloc[0]
    own = sum(plan.images(c) for c in grid.owner_trainings(PAPER, DATASET, "cpu", 0).values()) / 1000.0 / 60
    assert nb["counts"].startswith("everything") and nb["minutes"] == pytest.approx(own + 5.0)
    assert "Each notebook counts everything it runs" in plan.markdown(df, "cpu")
    md = plan.markdown(plan.plan("paper", [PAPER], [DATASET], [0], tmp_path / "out"), "paper")
    assert "0 of 1 notebooks count everything" in md
    # a measurement of another host model (the notebook's model changed since) is not this notebook's
    work.write_text(json.dumps({"cpu": {f"{PAPER}-{DATASET}": {"other_minutes": 10.0, "images_per_second": 500.0,
                                                                  "host": "resnet18/mnist", "ran_on": "cpu"}}}))
    other = plan.estimate(PAPER, DATASET, "cpu")
    assert not other["measured"] and other["minutes"] == pytest.approx(_trainings_minutes("cpu"))
    # where the measuring run trained the owner's models itself, their measured minutes replace the count
    work.write_text(json.dumps({"cpu": {f"{PAPER}-{DATASET}": {"other_minutes": 10.0, "owner_minutes": 8.0,
                                                                  "images_per_second": 500.0}}}))
    indep = sum(plan.images(c) for c in grid.trainings(PAPER, DATASET, "cpu", 0).values()) / 1000.0 / 60
    assert plan.estimate(PAPER, DATASET, "cpu")["minutes"] == pytest.approx(indep + 4.0 + 5.0)


def test_update_work_records_first_runs_other_work_with_the_hosts_throughput(tmp_path, fixed_speed):
    work = tmp_path / "work.json"
    rows = [{"paper": PAPER, "dataset": DATASET, "profile": "cpu", "seed": 0, "first_run_other_minutes": 7.25,
             "first_run_trained_minutes": 3.0, "first_run_jobs_minutes": 8.0,
             "ran_on": {"device": "cpu", "precision": "fp32", "cpu capability": "AVX512"}},
            {"paper": "ipcert2023", "dataset": DATASET, "profile": "cpu", "seed": 0, "first_run_other_minutes": 3.0,
             "first_run_trained_minutes": 4.5, "first_run_jobs_minutes": 2.0},
            {"paper": PAPER, "dataset": DATASET, "profile": "cpu", "seed": 1, "first_run_other_minutes": 99.0,
             "first_run_trained_minutes": 3.0, "first_run_jobs_minutes": 8.0},
            # its first run found its models (and so perhaps its votes) cached: its other work is not measured
            {"paper": "tartaglione2020", "dataset": DATASET, "profile": "cpu", "seed": 0, "first_run_other_minutes": 1.0,
             "first_run_trained_minutes": 0.0, "first_run_jobs_minutes": 0.0},
            {"paper": "adi2018", "dataset": DATASET, "profile": "cpu", "seed": 0}]        # not measured
    out = plan.update_work(rows, work)
    assert json.loads(work.read_text()) == out
    entry = out["cpu"][f"{PAPER}-{DATASET}"]
    assert entry == {"other_minutes": 7.25, "host": "/".join(plan.host(PAPER, DATASET, "cpu")),
                     "images_per_second": 1000.0, "ran_on": "cpu, fp32, AVX512", "owner_minutes": 3.0}
    assert out["cpu"][f"ipcert2023-{DATASET}"]["owner_minutes"] == 4.5      # the owner's trainings that run made
    assert list(out["cpu"]) == [f"{PAPER}-{DATASET}", f"ipcert2023-{DATASET}"]


def test_the_shipped_measurements_name_notebooks_of_the_registry():
    from wmlib import papers
    known = {f"{p}-{d}" for p, d in papers.pairs()}
    for profile, notebooks in plan.measured_work().items():
        assert profile in ("smoke", "cpu", "paper")
        for name, w in notebooks.items():
            assert name in known and w["other_minutes"] >= 0 and w["images_per_second"] > 0


def test_trained_minutes_counts_only_entries_written_since(model_cache):
    models = model_cache / "models"
    models.mkdir()
    (models / "old.json").write_text(json.dumps({"seconds": 600.0}))
    past = time.time() - 100
    os.utime(models / "old.json", (past, past))
    t0 = time.time() - 1
    (models / "new.json").write_text(json.dumps({"seconds": 90.0}))
    (models / "broken.json").write_text("{")
    assert trained_minutes_since(t0) == pytest.approx(1.5)


def test_timings_show_the_empty_cache_time_beside_the_plan(tmp_path):
    began = {"paper": PAPER, "dataset": DATASET, "profile": "cpu", "seed": 0, "wall_minutes": 1.0,
             "first_run_minutes": 9.0, "first_run_other_minutes": 4.0, "first_run_trained_minutes": 5.0,
             "first_run_jobs_minutes": 3.0, "compute_minutes": 8.0, "planned_minutes": 15.0, "ran_on": None}
    warm = {**began, "seed": 1, "first_run_trained_minutes": 0.0}     # its models were cached: not measured
    (tmp_path / "timings.json").write_text(json.dumps({"x": began, "y": warm}))
    assert plan.empty_cache_minutes(began) == 12.0 and plan.empty_cache_minutes(warm) is None
    lines = runner.write_timings(tmp_path).read_text().splitlines()[4:6]
    assert lines[0].startswith(f"| {PAPER} {DATASET} cpu, seed 0 |") and lines[0].endswith("| 12.0 | 15.0 | 1.25 |")
    assert lines[1].startswith(f"| {PAPER} {DATASET} cpu, seed 1 |") and lines[1].endswith("| — | 15.0 | — |")


def test_a_run_has_one_bar_in_estimated_minutes(tmp_path, fixed_speed):
    selected, train_jobs, nb_jobs = grid.grid_jobs("cpu", [PAPER], [DATASET], [0], tmp_path)
    minutes, empty = runner._estimates("cpu", [PAPER], [DATASET], [0], tmp_path, nb_jobs)
    df = plan.plan("cpu", [PAPER], [DATASET], [0], tmp_path)
    assert minutes == dict(zip(df["job"], df["minutes"])) and len(minutes) == len(train_jobs) + len(nb_jobs)
    assert empty == {nb_jobs[0].label: pytest.approx(plan.estimate(PAPER, DATASET, "cpu")["minutes"])}
    assert runner._estimates("smoke", [PAPER], [DATASET], [0], tmp_path, nb_jobs) == ({}, {})
    # two calls of the executor advance one shared bar by each job's weight, and leave it open
    import io
    from tqdm import tqdm
    bar = tqdm(total=6.0, file=io.StringIO())
    jobs = [grid.Job("notebook", PAPER, DATASET, "cpu", s) for s in (0, 1)]
    weight = (lambda j: {jobs[0].label: 2.5, jobs[1].label: 3.5}[j.label])
    out = grid.execute(jobs[:1], lambda j: 1, log_dir=tmp_path / "logs", bar=bar, weight=weight, progress=False)
    out += grid.execute(jobs[1:], lambda j: 1 / 0, log_dir=tmp_path / "logs", bar=bar, weight=weight, progress=False)
    assert bar.n == pytest.approx(6.0) and [o.ok for o in out] == [True, False]
    assert not bar.disable                          # still open (tqdm disables a bar it closes)
    bar.close()


def test_the_empty_cache_time_is_measured_where_the_run_began_empty():
    """A first run that trained the notebook's models after all its independent trainings ran in the
    same call: the trainings' wall minutes plus the notebook's; not measured (None) otherwise, rather
    than rebuilt from records that count attacks and votes differently per paper."""
    r = {"paper": PAPER, "dataset": DATASET, "profile": "cpu", "seed": 0, "first_run_minutes": 25.2,
         "first_run_other_minutes": 15.3, "first_run_trained_minutes": 9.9, "compute_minutes": 30.0,
         "first_run_jobs_minutes": 9.0}
    assert plan.empty_cache_minutes(r) == pytest.approx(34.2)
    assert plan.empty_cache_minutes({**r, "first_run_jobs_minutes": None}) is None         # not known to be empty
    assert plan.empty_cache_minutes({**r, "first_run_trained_minutes": 0.0}) is None       # its models were cached
    # a notebook whose models are all jobs of the grid trains none itself: the grid's trainings say it began empty
    assert not grid.owner_trainings("lemerrer2020", "mnist", "cpu", 0) and grid.trainings("lemerrer2020", "mnist", "cpu", 0)
    lm = {**r, "paper": "lemerrer2020", "first_run_trained_minutes": 0.0}
    assert plan.empty_cache_minutes(lm) == pytest.approx(34.2)
    assert plan.empty_cache_minutes({**lm, "first_run_jobs_minutes": None}) is None
    assert not plan.began_empty({**lm, "first_run_jobs_minutes": 0.0})   # nothing trained at all: not known to be empty
    job = lambda name, seed=0: grid.Job("training", PAPER, DATASET, "cpu", seed, name)   # noqa: E731
    a, b, c = job("a"), job("b"), job("c", seed=1)
    done = [grid.Outcome(a, True, 2.0), grid.Outcome(b, True, 3.5), grid.Outcome(c, True, 1.0)]
    assert runner._jobs_minutes(done, [a, b, c], [a, b, c]) == {(PAPER, DATASET, 0): 5.5, (PAPER, DATASET, 1): 1.0}
    assert runner._jobs_minutes(done[:1] + done[2:], [a, b, c], [a, c]) == {(PAPER, DATASET, 1): 1.0}   # b was cached
    assert runner._jobs_minutes([grid.Outcome(c, False, 1.0)], [c], [c]) == {}                        # failed: no measure
    nb = grid.Job("notebook", PAPER, DATASET, "cpu", 2)
    assert runner._jobs_minutes([grid.Outcome(nb, True, 9.0)], [a], [a]) == {(PAPER, DATASET, 2): 0.0}   # no trainings of its own
