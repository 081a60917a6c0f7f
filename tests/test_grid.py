"""Jobs on a shared model cache, the executors, seeds and their spread, the plan, the Pages workflow."""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml

from wmlib import grid, papers, results, runner, seeds

ROOT = Path(__file__).resolve().parents[1]

# A job that makes one cache entry: ``create`` logs that it ran, then takes ``delay`` seconds.
WORKER = textwrap.dedent("""
    import sys, time, torch
    from wmlib import cache
    log, delay, slow_save = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "1"
    if slow_save:                       # a save that is killed half-way through writing
        real = torch.save
        def save(obj, f):
            with open(f, "wb") as fh:
                fh.write(b"half a model")
            open(log + ".saving", "w").close()
            time.sleep(60)
        cache.torch.save = save
    def create():
        with open(log, "a") as f:
            f.write("trained\\n")
        time.sleep(delay)
        torch.manual_seed(0)
        return torch.nn.Linear(3, 2), {"seconds": delay}
    model, rec = cache.load_or_create("models", {"job": "the same model"}, lambda: torch.nn.Linear(3, 2), create)
    print(float(model.weight.sum()), rec["cache_hit"])
""")


def _worker(tmp_path, log, delay=0.0, slow_save=False):
    env = dict(os.environ, WMLIB_CACHE=str(tmp_path / "cache"), WMLIB_PRECISION="fp32")
    return subprocess.Popen([sys.executable, "-c", WORKER, str(log), str(delay), "1" if slow_save else "0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_jobs_asking_for_the_same_model_train_it_once(tmp_path):
    log = tmp_path / "trained.log"
    a, b = _worker(tmp_path, log, delay=2.0), _worker(tmp_path, log, delay=2.0)
    outs = [p.communicate(timeout=120) for p in (a, b)]
    assert a.returncode == 0 and b.returncode == 0, outs
    assert log.read_text().count("trained") == 1                  # one training, not two
    (wa, hit_a), (wb, hit_b) = (o[0].split() for o in outs)
    assert wa == wb and {hit_a, hit_b} == {"True", "False"}        # the second loaded the first's
    entries = list((tmp_path / "cache" / "models").iterdir())
    assert sorted(p.suffix for p in entries) == [".json", ".pt"]          # the lock lives elsewhere
    assert len(list((tmp_path / "cache" / "locks").glob("models-*.lock"))) == 1


def test_a_killed_job_leaves_no_half_written_entry(tmp_path):
    log = tmp_path / "trained.log"
    p = _worker(tmp_path, log, slow_save=True)
    deadline = time.time() + 120
    while not Path(str(log) + ".saving").exists():
        assert time.time() < deadline and p.poll() is None, p.communicate()
        time.sleep(0.1)
    p.send_signal(signal.SIGKILL)                                  # killed while writing the weights
    p.wait()
    folder = tmp_path / "cache" / "models"
    assert not list(folder.glob("*.pt")) and not list(folder.glob("*.json"))
    assert list(folder.glob(".*.tmp"))                             # only a temporary file is left
    q = _worker(tmp_path, log)                                     # the next job trains it, cleanly
    out, err = q.communicate(timeout=120)
    assert q.returncode == 0, err
    assert out.split()[1] == "False" and log.read_text().count("trained") == 2
    assert not list(folder.glob(".*.tmp"))                         # and removed what was left
    assert len(list(folder.glob("*.pt"))) == len(list(folder.glob("*.json"))) == 1


def test_jobs_and_errors():
    with pytest.raises(ValueError, match="kind=.*accepted values"):
        grid.Job("lunch", "adi2018", "mnist", "smoke", 0)
    with pytest.raises(ValueError, match="executor=.*accepted values"):
        grid.execute([], grid.run_training, "kubernetes", log_dir=Path("/tmp"))
    job = grid.Job("notebook", "adi2018", "mnist", "cpu", 2)
    assert job.rerun() == "python -m wmlib.runner run --paper adi2018 --dataset mnist --profile cpu --seeds 2"
    p = grid.Slurm(partition="gpu", gpus_per_job=2, time_limit_min=90).parameters()
    assert p["slurm_partition"] == "gpu" and p["gpus_per_node"] == 2 and p["timeout_min"] == 90
    with pytest.raises(ValueError, match="executor='slurm' needs Slurm"):
        grid._executor("slurm", Path("/tmp/wmbook-submitit"), None) if not __import__("shutil").which("srun") \
            else (_ for _ in ()).throw(ValueError("executor='slurm' needs Slurm (srun is here)"))


def test_slurm_jobs_ask_for_what_the_command_line_says(tmp_path, monkeypatch):
    srun = tmp_path / "bin" / "srun"                 # submitit checks for srun; this machine has none
    srun.parent.mkdir()
    srun.write_text("#!/bin/sh\nexit 0\n")
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{srun.parent}:{os.environ['PATH']}")
    ex = grid._executor("slurm", tmp_path, grid.Slurm(partition="gpu", gpus_per_job=2, time_limit_min=90))
    sbatch = ex._executor._make_submission_file_text("python -m wmlib", "job")
    for line in ("--partition=gpu", "--gpus-per-node=2", "--time=90", "--cpus-per-task=8", "--mem=32GB"):
        assert f"#SBATCH {line}" in sbatch


def _fails_on_seed_one(job):
    if job.seed == 1:
        raise RuntimeError("out of memory (on purpose)")
    return job.seed * 10


@pytest.mark.parametrize("executor", ["inprocess", "local"])
def test_a_failed_job_is_reported_with_its_log_and_the_others_are_kept(tmp_path, executor):
    import cloudpickle                   # the job's function travels by value: tests is not a package
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    jobs = [grid.Job("notebook", "adi2018", "mnist", "smoke", s) for s in (0, 1, 2)]
    out = grid.execute(jobs, _fails_on_seed_one, executor, log_dir=tmp_path, parallel=2, progress=False)
    by_seed = {o.job.seed: o for o in out}
    assert [by_seed[s].ok for s in (0, 1, 2)] == [True, False, True]
    assert by_seed[0].value == 0 and by_seed[2].value == 20
    assert "out of memory (on purpose)" in by_seed[1].error
    assert "out of memory (on purpose)" in Path(by_seed[1].log).read_text()
    failed = grid.report_failures(out, tmp_path / "failed.json")
    listed = json.loads((tmp_path / "failed.json").read_text())
    assert len(failed) == 1 and listed[0]["rerun"].endswith("--seeds 1")


def test_seeds_share_models_and_the_grid_trains_each_once():
    jobs = grid.training_jobs([("lemerrer2020", "mnist")], "smoke", [0, 1])
    P = papers.settings("lemerrer2020", "smoke", "mnist")
    per_seed = len(grid.trainings("lemerrer2020", "mnist", "smoke", 0))
    assert per_seed == len(P.nets) + sum(n.unmarked for n in P.nets.values())     # networks and unmarked copies
    # seed 1's network is seed 0's first unmarked copy: the two seeds need fewer than twice the models
    assert per_seed < len(jobs) < 2 * per_seed
    assert len({(c.model, c.seed, c.epochs) for _, c in jobs}) == len(jobs)


def _record(paper, dataset, seed, value, folder, holds=True, profile="cpu"):
    from wmlib import claims
    cid, claim = next((c.id, c) for c in claims.load(paper).values() if c.value is not None and c.attempted)
    results.write(paper, dataset, profile, [results.claimed(paper, cid, value, holds=holds, profile=profile),
                                             results.ours_only("extra", value / 2, "%")],
                  seed=seed, folder=folder)
    return claim


def test_spread_over_seeds(tmp_path):
    folder = tmp_path / "results"
    claim = _record("adi2018", "mnist", 0, 10.0, folder)
    for s, v in ((1, 12.0), (2, 14.0)):
        _record("adi2018", "mnist", s, v, folder)
    recs = results.read_all(folder)
    assert len(recs) == 3 and [r["seed"] for r in results.pages(recs)] == [0]
    df = seeds.spread(recs)
    row = df[df["claim"] != ""].iloc[0]
    assert row["n"] == 3 and row["mean"] == pytest.approx(12.0) and (row["lo"], row["hi"]) == (10.0, 14.0)
    assert row["spread"] == "min–max" and row["paper_inside"] == (10.0 <= claim.value <= 14.0)
    # five seeds or more: the 95 % t interval of the mean (scipy's t quantile)
    for s, v in ((3, 11.0), (4, 13.0)):
        _record("adi2018", "mnist", s, v, folder)
    row = seeds.spread(results.read_all(folder)).query("claim != ''").iloc[0]
    from scipy import stats
    half = stats.t.ppf(0.975, 4) * float(__import__("numpy").std([10, 12, 14, 11, 13], ddof=1)) / 5 ** 0.5
    assert row["spread"] == "95 % t interval" and row["hi"] - row["mean"] == pytest.approx(half)
    md = seeds.markdown(results.read_all(folder), "adi2018")
    assert "seeds" in md and "0, 1, 2, 3, 4" in md and ("**no**" in md or "yes" in md)
    assert "one seed ran" in seeds.markdown(results.read_all(folder)[:1], "adi2018")
    assert "No status changes with the seed" in md
    # the landing's figure: one bar per headline with a published value, the table folded under it
    assert seeds.figure(results.read_all(folder), tmp_path / "seeds.png") and (tmp_path / "seeds.png").stat().st_size > 0
    landing = seeds.markdown(results.read_all(folder), figure_path="seeds.png")
    assert "```{figure} seeds.png" in landing and "{dropdown} Every headline over seeds (2 rows)" in landing
    assert not seeds.figure(results.read_all(folder)[:1], tmp_path / "none.png") and not (tmp_path / "none.png").exists()
    # a seed whose run does not hold the claim: the sentence names the headline whose status flips
    _record("adi2018", "mnist", 5, 12.0, folder, holds=False)
    md = seeds.markdown(results.read_all(folder), "adi2018")
    flips = seeds.spread(results.read_all(folder)).query("claim != ''").iloc[0]
    assert len(flips["statuses"]) == 2 and f"1 change status with the seed — {flips['quantity']}" in md
    outside = 0 if flips["lo"] <= claim.value <= flips["hi"] else 1
    assert f"lies outside our spread for {outside} of them" in md


def test_a_seeds_notebook_and_record_do_not_replace_the_pages(tmp_path):
    assert runner.notebook_path("adi2018", "mnist", tmp_path, 3, page=False) == \
        tmp_path / "seeds" / "adi2018-mnist-seed3.ipynb"
    _record("adi2018", "mnist", 1, 10.0, tmp_path / "results")
    assert grid.page_seed("adi2018", "mnist", "cpu", [2, 3], tmp_path) == 1
    assert grid.page_seed("adi2018", "mnist", "cpu", [0, 2], tmp_path) == 0
    runner.write_summary(tmp_path)
    assert "one seed ran (1)" in (tmp_path / "spread" / "adi2018.md").read_text()


def test_seeds_on_the_command_line(monkeypatch, capsys):
    monkeypatch.setenv("SEEDS", "0 x")
    with pytest.raises(SystemExit) as err:
        runner.main(["plan", "--profile", "smoke", "--paper", "adi2018", "--dataset", "mnist"])
    assert err.value.code == 2 and "SEEDS='0 x'" in capsys.readouterr().err
    monkeypatch.setenv("SEEDS", "0 1 2")
    assert runner._seeds_default() == [0, 1, 2]


def test_plan_lists_jobs_cached_and_their_cost(model_cache, tmp_path):
    from wmlib import plan
    df = plan.plan("paper", ["lemerrer2020"], ["mnist"], [0, 1], tmp_path)
    P = papers.settings("lemerrer2020", "paper", "mnist")
    trainings = df[df["kind"] == "training"]
    assert len(df[df["kind"] == "notebook"]) == 2 and len(trainings) == len(grid.training_jobs(
        [("lemerrer2020", "mnist")], "paper", [0, 1]))
    assert not trainings["cached"].any() and (trainings["minutes"] > 0).all()
    cnn = plan.images(grid.trainings("lemerrer2020", "mnist", "paper", 0)["CNN"])
    assert cnn == P.nets["CNN"].epochs * 60_000
    md = plan.markdown(df, "paper")
    assert "device-hours here" in md and "images/s (timed steps)" in md and "lemerrer2020/mnist" in md


def test_the_pages_workflow_builds_with_the_readme_commands():
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    on = wf.get("on", wf.get(True))                 # YAML 1.1 reads the key `on` as True
    assert "push" in on and "workflow_dispatch" in on
    build, deploy = wf["jobs"]["build"], wf["jobs"]["deploy"]
    runs = "\n".join(s.get("run", "") for s in build["steps"])
    readme = (ROOT / "README.md").read_text()
    for cmd in ("make book", "make test"):
        assert cmd in runs and cmd in readme
    uses = [s.get("uses", "") for s in build["steps"]]
    cache = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/cache"))
    assert "wmlib" in cache["with"]["path"] and "WMLIB_CACHE" in json.dumps(wf)
    assert any(u.startswith("actions/upload-pages-artifact") for u in uses)
    assert any(s.get("uses", "").startswith("actions/deploy-pages") for s in deploy["steps"])
    assert deploy["needs"] == "build" and wf["permissions"]["pages"] == "write"


def test_a_training_job_through_the_local_executor_fills_the_shared_cache(model_cache, tmp_path, monkeypatch):
    from wmlib.train import is_trained, train
    job, cfg = next((j, c) for j, c in grid.training_jobs([("lemerrer2020", "mnist")], "smoke", [0])
                    if j.name == "MLP")
    assert not is_trained(cfg)
    (out,) = grid.execute([job], grid.run_training, "local", log_dir=tmp_path / "logs", progress=False)
    assert out.ok, (out.error, out.log)
    assert out.value["cache_hit"] is False and is_trained(cfg)            # trained in another process
    there = train(cfg, progress=False)
    assert there.record["cache_hit"]                                       # and found here
    # the same training in this process, into a cache of its own (at the precision the job chose):
    # bit for bit what the job's process made
    (tmp_path / "here").mkdir()
    shutil.copy2(model_cache / "precision.json", tmp_path / "here" / "precision.json")
    monkeypatch.setenv("WMLIB_CACHE", str(tmp_path / "here"))
    here = train(cfg, progress=False)
    assert not here.record["cache_hit"]
    assert all(torch.equal(a, b) for a, b in zip(here.model.state_dict().values(), there.model.state_dict().values()))
