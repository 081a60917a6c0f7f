"""The IPCert notebook's experiment steps (wmlib/papers/ipcert2023.py) and its settings, on a tiny
MLP that memorises 20 random IP images of a synthetic 10-class task: seconds, no dataset."""
from dataclasses import fields

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from wmlib import certify as C
from wmlib import papers
from wmlib import train as T
from wmlib.models import Classifier, Normalize
from wmlib.papers import ipcert2023 as S
from wmlib.schemes import ipcert
from wmlib.schemes.adi import TriggerCycler, TriggerSet
from conftest import template_task


task = template_task


TRAIN, VAL, EVAL = task(400, 0), task(200, 1), task(200, 2)
_g = torch.Generator().manual_seed(7)
IP = TriggerSet(torch.randint(0, 256, (20, 1, 28, 28), generator=_g, dtype=torch.uint8),
                torch.randint(0, 10, (20,), generator=_g), "random")


def mlp(seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    return Classifier(Normalize((0.5,), (0.25,)),
                      nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU()), nn.Linear(64, 10))


@pytest.fixture(scope="module")
def marked() -> T.Trained:
    """The MLP trained with the IP set in every batch (it memorises it: MR 1.0)."""
    model = mlp()
    T.fit(model, TRAIN, epochs=10, lr=0.05, batch_size=50, schedule="constant", extra=TriggerCycler(IP, 4),
          progress=False)
    assert T.accuracy(model, IP.x, IP.y) == 1.0
    return T.Trained(model.eval(), {"hash": "steps-marked", "seconds": 3.0})


@pytest.fixture(scope="module")
def unmarked() -> T.Trained:
    model = mlp(1)
    T.fit(model, TRAIN, epochs=5, lr=0.05, batch_size=50, schedule="constant", progress=False)
    return T.Trained(model.eval(), {"hash": "steps-unmarked", "seconds": 2.0})


# ----------------------------------------------------------------------------- settings
def test_settings_of_every_profile_and_tiny():
    for profile in ("smoke", "cpu", "paper"):
        for dataset in ("mnist", "cifar10"):
            P = papers.settings("ipcert2023", profile, dataset)
            assert isinstance(P, S.IPCertSettings)
            assert P.trigger_preprocess == ("resize" if dataset == "mnist" else "center-crop")
    paper = papers.settings("ipcert2023", "paper", "cifar10")
    assert (paper.model, paper.sigma_wm, paper.m, paper.nonstolen, paper.pgd_iters) == ("resnet18", 1.0, 10_000, 50, 1000)
    tiny = paper.tiny()
    assert tiny.model == "resnet18_narrow" and tiny.sigma_wm == paper.sigma_wm and tiny.lr == paper.lr
    assert tiny.nonstolen == 2 and tiny.epochs == 1 and tiny.n_train == 64 and tiny.pgd_iters == 2
    assert 2 <= tiny.m <= 4 and tiny.m_mr == 2 and tiny.targets == S.SMOKE_TARGETS
    assert all(len(getattr(tiny, f.name)) <= 2 for f in fields(tiny) if f.name.endswith("_sweep"))
    assert tiny.pgd_radii == (0.25,) and tiny.lam_radius == 0.25 and tiny.lam_sweep == (tiny.pgd_lam,)
    # the zero-cost null reads at least five independent models per dataset at cpu (issue 25)
    assert all(papers.settings("ipcert2023", "cpu", ds).nonstolen >= 5 for ds in ("mnist", "cifar10"))
    # cpu: the two claims that do not hold on the CPU CNN are shown, not asserted
    cpu = papers.settings("ipcert2023", "cpu", "cifar10")
    assert not cpu.targets.asserted("min_ipcert_minus_ms") and cpu.targets.asserted("min_noise_gain")
    assert cpu.targets.min_clean_acc == 0.65 and paper.targets.shown_only == ()
    with pytest.raises(ValueError, match="unknown setting"):
        cpu.replace(sigma=0.1)


def test_settings_helpers_feed_the_same_configuration():
    P = papers.settings("ipcert2023", "cpu", "mnist")
    assert P.sigma("watermark") == 0.03 and P.sigma("fingerprint") == 0.01
    assert P.sigma_sweep("fingerprint") == (0.005, 0.01, 0.02)
    with pytest.raises(ValueError, match="kind="):
        P.sigma("backdoor")
    cfg = P.train_config("mnist", seed=3)
    assert (cfg.model, cfg.epochs, cfg.lr, cfg.schedule, cfg.batch_size, cfg.weight_decay, cfg.n_train,
            cfg.seed) == ("cifar_cnn", 2, 0.2, "onecycle", 100, 5e-4, 30_000, 3)
    noise = P.noise_training(IP)
    assert (noise.sigma, noise.draws, noise.every, noise.ip_batch, noise.clip) == (0.03, 2, 2, 20, 1.0)


# ----------------------------------------------------------------------------- smoothing
def test_grid_and_ipcert_curve():
    g = S.grid(0.5)
    assert len(g) == 65 and g[0] == 0 and g[-1] == pytest.approx(1.6)
    counts = np.zeros((4, 10), dtype=np.int64)
    counts[:, 3] = 1000                                    # unanimous votes for label 3
    v = C.Votes(counts, np.ones(1000), sigma=0.5, m=1000, seed=0)
    curve = S.ipcert_curve(v, np.array([3, 3, 3, 0]), 0.5, 0.001)
    # three of four points match, each certified to σ/2·(Φ⁻¹(p̲) − Φ⁻¹(p̄)) ≈ 2.36σ at m = 1,000
    assert curve[0] == 0.75 and curve[-1] == 0.0
    assert ipcert.largest_radius(S.grid(1.0), curve, 0.75) == pytest.approx(2.35, abs=0.05)


def test_smoother_counts_each_pass_once_and_reads_three_rates(model_cache, marked, unmarked):
    sm = S.Smoother(seed=0)
    first = sm.votes(marked, IP, 0.01, 20)
    again = sm.votes(marked, IP, 0.01, 20)
    assert again is first and len(sm.seconds) == 1 and sm.seconds[0] > 0
    rates = sm.mrs(marked, IP, 0.01, 20)
    assert len(sm.seconds) == 1                              # the same pass
    assert rates == {"no smoothing": 1.0, "MS": 1.0, "IPCert": 1.0}    # tiny noise keeps the memorised set
    other = sm.mrs(unmarked, IP, 0.01, 20)
    assert other["IPCert"] <= 0.4 and other["no smoothing"] <= 0.4 and len(sm.seconds) == 2
    # a fresh smoother reads the cached votes (their recorded seconds, not a new pass)
    assert S.Smoother(seed=0).votes(marked, IP, 0.01, 20).seconds == first.seconds
    # one pass of 40 draws gives the votes of its first 10 and 20, cached, and costs one pass
    sm = S.Smoother(seed=3)
    main = sm.votes(marked, IP, 0.5, 40, prefixes=(10, 20))
    first10 = sm.votes(marked, IP, 0.5, 10)
    assert len(sm.seconds) == 1 and first10.seconds == 0.0
    alone = ipcert.noisy_votes(marked.model.eval(), IP.x, IP.y, sigma=0.5, m=10, seed=3)     # a pass of its own
    assert np.array_equal(first10.counts, C.noisy_votes(S.certspace.fold(marked.model), IP.x, IP.y, sigma=0.5,
                                                        m=10, seed=3).counts)
    assert np.array_equal(first10.draw_match, main.draw_match[:10]) and alone.counts.sum() == 10 * len(IP)


# ----------------------------------------------------------------------------- worst-case post-processing
def test_pgd_sweep_and_removal_radius(model_cache, marked):
    P = S.IPCertSettings(pgd_radii=(0.5, 3.0), pgd_lr=1.0, pgd_iters=30, pgd_val_batch=100, pgd_lam=10.0)
    df = S.pgd_sweep(P, {"watermark": (marked, IP)}, VAL, EVAL, seed=0)
    assert list(df.R) == [0.0, 0.5, 3.0] and list(df.ip.unique()) == ["watermark"]
    assert df.MR.iloc[0] == 1.0 and df.norm.iloc[0] == 0.0
    assert df.norm.iloc[1] == pytest.approx(0.5, abs=1e-4) and df.norm.iloc[2] <= 3.0 + 1e-4
    # measured (λ = 10): MR 1.0 -> 0.90 at R = 0.5 and 0.40 at R = 3, test accuracy 1.0 -> 0.86
    assert df.MR.iloc[2] <= 0.5 < df.MR.iloc[1] and df.acc.iloc[2] >= 0.75
    assert S.removal_radius(df, "watermark", 0.5) == 3.0
    assert S.removal_radius(df, "watermark", -1.0) is None
    assert S.accuracy_at(df, "watermark", 0.0) == df.acc.iloc[0] and S.accuracy_at(df, "watermark", None) is None
    with pytest.raises(ValueError, match="kind="):
        S.removal_radius(df, "wm", 0.2)
    # the step is cached by every setting: a rerun hits the cache, another λ does not
    assert S.pgd(P, marked, IP, VAL, 3.0, seed=0).record["cache_hit"]
    assert not S.pgd(P, marked, IP, VAL, 3.0, lam=1.0, seed=0).record["cache_hit"]


def test_post_process_fine_tunes_and_distils_each_target(model_cache, marked, monkeypatch):
    P = S.IPCertSettings(post_epochs=1, post_lr=0.05, temperature=4.0)
    post = S.post_process(P, {("watermark", "plain"): (marked, IP)}, VAL, "mnist", seed=0)
    assert set(post) == {("watermark", "plain", "fine-tuning"), ("watermark", "plain", "distillation")}
    for m in post.values():
        drift = ipcert.l2_distance(m.model, marked.model)
        assert 0 < drift < 5 and not m.record["cache_hit"]
    again = S.post_process(P, {("watermark", "plain"): (marked, IP)}, VAL, "mnist", seed=0)
    assert all(m.record["cache_hit"] for m in again.values())
    assert S.seconds_of(post.values()) == pytest.approx(sum(m.record["seconds"] for m in post.values()))


def test_mean_gap():
    assert S.mean_gap([1.0, 0.5], [0.5, 0.5]) == 0.25
    assert S.mean_gap(np.ones(3), np.zeros(3)) == 1.0
    assert isinstance(S.mean_gap(pd.Series([0.2]), [0.1]), float)


# ----------------------------------------------------------------------------- the certified space
def test_soundness_rows_and_forms_table(model_cache, marked):
    """The MLP's only buffers are its normalisation (mean 0.5, std 0.25): the unbounded buffer attack
    breaks the parameter-only certificate (CMR(0) = 1 promised, MR far below), while no attack on
    the whole file breaks the whole-file certificate at the distance it moved."""
    P = S.IPCertSettings(sigma_wm=0.1, m=200, m_mr=100, alpha=0.001, buffer_steps=100, buffer_lr=0.05,
                         buffer_lam=1.0, buffer_n=200, sound_radii=(0.5, 1.0), adaptive_draws=2, adaptive_iters=5,
                         pgd_lr=1.0, pgd_val_batch=50)
    votes = {"watermark": {sp: ipcert.smoothed_votes(marked, IP, sigma=0.1, m=200, space=sp)
                           for sp in ("folded", "parameters")}}
    df = S.soundness(P, {"watermark": (marked, IP)}, votes, TRAIN, VAL, seed=0)
    assert len(df) == 2 + 6 * len(P.sound_radii)
    old = df[df.certificate == "parameter-only"]
    free = old[old.attack == "buffers, unbounded"]
    assert (free["ℓ2 (parameters)"] == 0.0).all() and list(free["R/σ"]) == [0.0, *P.sound_radii]
    assert free["CMR(R)"].iloc[0] == 1.0 and free.violated.iloc[0] and free["smoothed MR after"].iloc[0] <= 0.5
    assert not old[old.attack.str.startswith("adaptive")].violated.any()   # it holds for what it covers
    paper_pgd = df[df.attack == "PGD (Alg. 1), ≤ R"]
    assert len(paper_pgd) == 2 * len(P.sound_radii) and not paper_pgd.violated.any()
    # parameters only: the same distance in both spaces
    assert np.allclose(paper_pgd["ℓ2 (parameters)"], paper_pgd["ℓ2 (certified space)"], rtol=1e-4)
    sound = df[df.certificate == "whole file"]
    assert not sound.violated.any()
    assert sound[sound.attack == "buffers, unbounded"]["R/σ"].iloc[0] > 10       # far outside the ball
    bounded = sound[sound.attack != "buffers, unbounded"]
    assert np.allclose(sorted(set(bounded["R/σ"].round(6))), P.sound_radii)
    assert (bounded["ℓ2 (certified space)"] <= bounded["R/σ"] * 0.1 * (1 + 1e-4)).all()
    total = float(df["attack seconds"].sum() + df["check seconds"].sum())
    assert 0 < S.soundness_seconds(df) < total            # the repeated unbounded rows counted once
    # the attacked models are cached: a second pass trains nothing
    again = S.buffer_attacked(P, marked, IP, TRAIN, seed=0)
    assert again.record["cache_hit"]

    forms = S.forms_table(P, {"watermark": (marked, IP)}, {sp: S.Smoother(0, space=sp) for sp in ("folded", "parameters")})
    assert len(forms) == 1 + len(S.certspace.FORMS)
    assert forms[["IPCert", "MS"]].apply(lambda c: c.between(0, 1)).all().all()
    assert forms["certified space"].str.contains("default").sum() == 1


def test_our_models_placed_on_the_dependence_axis():
    """Two IP sets with known per-point rates (60 robust points, 30 failing 5 % of the time, 10 failing
    40 %) and known dependence (ρ = 0 and 0.6): each is placed near its own ρ on the study of synthetic
    votes with its own rates, where the synthetic mean CMR gap matches the measured one."""
    from types import SimpleNamespace

    from wmlib import dependence as dep
    n, m = 100, 1000
    rates = np.r_[np.zeros(60), np.full(30, 0.05), np.full(10, 0.4)]
    votes, ips, curves = {}, {}, {}
    for kind, rho in (("independent", 0.0), ("together", 0.6)):
        v, y = dep.synthetic_votes(n, m, rates, rho, seed=21)
        votes[kind], ips[kind] = v, SimpleNamespace(y=torch.as_tensor(y))
        curves[kind] = ipcert.cmr_curves(v, y, S.GRID_OVER_SIGMA, 0.001)
    assert np.abs(S.point_failure_rates(votes["independent"], ips["independent"].y.numpy()) - rates).max() < 0.05
    P = papers.settings("ipcert2023", "cpu", "mnist").replace(dependence_rhos=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
                                                              dependence_reps=2)
    study = S.dependence_study(P, votes, ips, seed=0)
    assert len(study) == 2 * 6 * 2 and list(study.columns) == ["IP set", "rho", "rep", *dep.SUMMARY]
    for kind, g in study.groupby("IP set"):
        assert g.groupby("rho").dispersion.mean().is_monotonic_increasing, kind
    place = S.dependence_placement(votes, ips, curves, study)
    assert place.loc["independent", "ρ placed"] < 0.1 and place.loc["independent", "dispersion D"] == pytest.approx(1, abs=0.2)
    assert place.loc["together", "ρ placed"] == pytest.approx(0.6, abs=0.15)
    assert (place["points losing the vote"] == 0).all() and (place.n == n).all() and (place.m == m).all()
    assert place["mean failure rate"].to_numpy() == pytest.approx([rates.mean()] * 2, abs=0.01)
    for kind in place.index:
        assert place.loc[kind, "mean CMR gap, synthetic at ρ"] == pytest.approx(
            place.loc[kind, "mean CMR gap, measured"], abs=0.03), kind
    # MS ahead in area, by less when points fail together
    assert place.loc["independent", "mean CMR gap, measured"] < place.loc["together", "mean CMR gap, measured"] < 0


def test_the_papers_regime_reproduces_its_ipcert_anchor():
    """q fixed by MS leaving CMR = 1 at R = 0.75σ (the paper's CIFAR-10 anchor) at n = 100 and the
    paper's m = 10,000: IPCert then keeps CMR = 1 beyond 1.25σ (the paper's other anchor) at every
    ρ < 1, and MS's own radius lands near 0.75σ."""
    P = papers.settings("ipcert2023", "cpu", "mnist").replace(dependence_rhos=(0.0, 0.3, 0.6, 1.0), dependence_reps=1)
    df = S.paper_regime(P, 0.75, n=100, m=10_000, seed=0)
    assert list(df.rho) == [0.0, 0.3, 0.6] and df.failure.is_monotonic_increasing
    assert (df.r1_ipcert >= 1.25).all()
    assert df.r1_ms.to_numpy() == pytest.approx([0.75] * 3, abs=0.15)
    # the second anchor picks the ρ where IPCert's radius has fallen to it (interpolated), or none
    r1 = df.groupby("rho").r1_ipcert.mean()
    target = float(r1.iloc[1] + r1.iloc[2]) / 2
    at = S.paper_placement(df, target)
    assert 0.3 <= at["rho"] <= 0.6 and at["r1_ipcert"] == pytest.approx(target)
    assert df.failure.min() <= at["failure"] <= df.failure.max() and "rep" not in at
    assert S.paper_placement(df, 0.5) is None
    reg = S.regime(P.replace(dependence_failures=(0.01, 0.1)), 100, 1000, seed=0)
    assert len(reg) == 2 * 4 and (reg.gap <= 0).all()


def test_fingerprint_transfer_and_compare_at(model_cache, marked, unmarked):
    P = S.IPCertSettings(fp_n=10, fp_steps=20, fp_lr=0.05, fp_k_sweep=(1.0, 5.0), m=100, sigma_wm=0.05)
    df = S.fingerprint_transfer(P, marked, [unmarked, marked], {"fine-tuning": marked}, "mnist", EVAL, seed=0)
    assert list(df.start) == ["uniform", "uniform", "images", "images"] and list(df.k) == [1.0, 5.0, 1.0, 5.0]
    assert (df["MR after fine-tuning"] == 1.0).all()                 # the target itself: MR 1 by construction
    assert (df["non-stolen MR, max"] == 1.0).all()                   # the target is among the "non-stolen"
    assert df["non-stolen MR, median"].between(0, 1).all() and df["points reaching loss 0"].between(0, 10).all()
    with pytest.raises(ValueError, match="fp_starts="):
        S.fingerprint_transfer(P.replace(fp_starts=("noise",)), marked, [unmarked], {}, "mnist", EVAL)
    with pytest.raises(ValueError, match="fp_n=10"):
        S.fingerprint_transfer(P, marked, [unmarked], {}, "mnist", EVAL.head(5))
    row = S.compare_at(P, marked, IP, 0.05, S.Smoother(seed=0), EVAL)
    assert row["MR (no smoothing)"] == 1.0 and 0 <= row["share of R with IPCert ≥ MS"] <= 1
    assert row["mean CMR gap IPCert − MS"] == pytest.approx(row["mean CMR, IPCert"] - row["mean CMR, MS"])
    assert row["largest R/σ with CMR = 1, IPCert"] <= row["largest R/σ with CMR ≥ 0.9, IPCert"]


def test_owner_verdicts_align_each_suspect_and_keep_the_papers_reading(model_cache, marked, unmarked):
    """The owner's verdict table: each suspect aligned to its target's file before the noise is
    drawn — an edited copy of the target (permuted and rescaled units, two dummy units per layer)
    reads as the target itself; the paper's reading of the file as it is is kept beside; an
    independent model stays unclaimed both ways; a model of other widths is read as it is and says
    it was not aligned."""
    from wmlib import zerocost
    P = S.IPCertSettings(sigma_wm=0.05, m=100, m_mr=100, alpha=0.001)
    edited = zerocost.edits(marked, 0, only=("all of them",))["all of them"]
    torch.manual_seed(5)
    narrow = T.Trained(Classifier(Normalize((0.5,), (0.25,)), nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU()),
                                  nn.Linear(16, 10)).eval(), {"hash": "steps-narrow", "seconds": 1.0})
    suspects = [("watermark", name, m, 100) for name, m in
                (("target", marked), ("edited", edited), ("independent", unmarked), ("narrow", narrow))]
    ours, paper = S.owner_verdicts(P, S.Smoother(seed=0), {"watermark": marked}, {"watermark": IP}, suspects)
    target = ours["watermark", "target"]
    assert target.passed and target.score == 1.0 and paper["watermark", "target"].score == 1.0
    assert ours["watermark", "edited"].score == target.score and ours["watermark", "edited"].passed
    assert not ours["watermark", "independent"].passed and not paper["watermark", "independent"].passed
    assert ours["watermark", "narrow"].alignment.startswith("not aligned")
    assert ours["watermark", "narrow"].score == paper["watermark", "narrow"].score


def test_a_transform_after_fine_tuning_votes_as_fine_tuning_alone(model_cache, marked):
    """The certified readings: the thief fine-tunes the target, then permutes and rescales its units
    and adds dummy units; the votes drawn around the copy aligned to the target's file are those
    of the fine-tuned model aligned alone (the same draws on the same aligned file)."""
    from wmlib import attacks, zerocost
    ft = attacks.fine_tune(marked, "FTAL", VAL, epochs=1, lr=0.01, batch_size=50, progress=False)
    edited = zerocost.edits(ft, 0, only=("all of them",))["all of them"]
    alone = ipcert.smoothed_votes(ft, IP, sigma=0.05, m=100, owner=marked)
    after = ipcert.smoothed_votes(edited, IP, sigma=0.05, m=100, owner=marked)
    mr = [ipcert.matching_rate(v.labels, IP.y.numpy()) for v in (alone, after)]
    assert mr[0] >= 0.9 and abs(mr[1] - mr[0]) <= 0.05
    assert abs(float(np.median(after.draw_match)) - float(np.median(alone.draw_match))) <= 0.05


def _measured(**change):
    from wmlib.papers import ipcert2023 as steps
    base = dict(r_remove={"watermark": 0.25, "fingerprint": None}, drift={"watermark": 3.1, "fingerprint": 2.0},
                nonstolen_max={"watermark": 0.08, "fingerprint": 0.19}, n_nonstolen=5,
                mr_gap={"watermark": 0.04, "fingerprint": 0.0}, cmr_gap={"watermark": -0.07, "fingerprint": -0.01},
                large_gap=-0.1, noise_gain=0.4, eta_gain=0.01,
                buffer={"watermark": (0.99, 0.03), "fingerprint": (1.0, 0.11)},
                violations={"parameter-only": 9, "whole file": 0}, attacked={"parameter-only": 10, "whole file": 10},
                sound_cost={"watermark": -0.12, "fingerprint": 0.0}, dispersion={"watermark": 13.6, "fingerprint": 80.0},
                attack_gain={"watermark": 0.02, "fingerprint": 0.0},
                transfer=pd.DataFrame([{"start": s, "k": k, "non-stolen MR, max": v}
                                       for s, k, v in (("uniform", 1.0, 0.11), ("uniform", 5.0, 0.19), ("images", 10.0, 1.0))]))
    return steps, steps.Measured(**{**base, **change})


def test_the_findings_sentences_follow_the_measurements():
    """The page's findings are computed: they turn when the measurements do."""
    steps, m = _measured()
    P = papers.settings("ipcert2023", "cpu", "mnist")
    said = steps.findings(P, "mnist", m)
    assert "the watermark's MR falls to ≤ 0.2 at R = 0.25, 0.08 of fine-tuning's drift" in said["pgd"]
    assert f"the fingerprint is not removed up to R = {max(P.pgd_radii):g}" in said["pgd"]
    assert "0.19 on the fingerprint" in said["nonstolen"] and "over 5 models" in said["nonstolen"]
    assert "0.11 from uniform starts at k = 1 and 1.00 from images starts at k = 10" in said["transfer"]
    assert "(IPCert's recipe, uniform at k = 5: 0.19)" in said["transfer"]
    assert said["noise"].startswith("Training with noise raises") and "at least MS's on both" in said["mr"]
    assert "9 of 10 for the paper's parameter-only certificate, 0 of 10 for the whole-file one" in said["file"]
    assert "does not lie at or above MS's" in said["cmr"] and "D = 13.6 (watermark)" in said["cmr"]
    steps, m = _measured(noise_gain=-0.01, mr_gap={"watermark": -0.03, "fingerprint": 0.0},
                         cmr_gap={"watermark": 0.0, "fingerprint": -0.01}, large_gap=0.0,
                         transfer=pd.DataFrame(columns=["start", "k", "non-stolen MR, max"]))
    said = steps.findings(P, "mnist", m)
    assert said["noise"].startswith("Training with noise does not raise") and "below MS's on watermark" in said["mr"]
    assert "lies at or above MS's within 0.02" in said["cmr"] and "did not run" in said["transfer"]
