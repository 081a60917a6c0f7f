"""Verification after zero-cost edits (wmlib.zerocost, the alignment hooks of the schemes): an edit
that keeps every prediction erases the white-box verifications as the papers read the file, and
alignment to the owner's file claims it again; an independent model stays unclaimed aligned."""
import numpy as np
import pytest
import torch
from scipy import stats

from wmlib import attacks, zerocost
from wmlib import data as D
from wmlib.align import aligned
from wmlib.models import build_model
from wmlib.schemes import ipcert
from wmlib.schemes import weights as W
from wmlib.schemes.adi import TriggerSet
from wmlib.train import TrainConfig, Trained, predict, train

from conftest import near_tie_share, random_data


def _trained(model, name):
    return Trained(model.eval(), {"key": {"test": name}, "hash": f"test-{name}"})


def _embedded(seed):
    """LeNet5-caffe (untrained) with the payload written at the key positions: correlation 1."""
    torch.manual_seed(seed)
    model = build_model("lenet5_caffe", "mnist")
    key = W.make_key(model, seed=0)
    values = W.payload(seed=0, scale=1.0)      # SF = 1, the smoke and cpu profiles' (about 100 x the weights)
    W.embed_values(model, key, values)
    return _trained(model, f"lenet-{seed}"), key, values


@pytest.fixture(scope="module")
def lenet():
    return _embedded(0)


@pytest.fixture(scope="module")
def others():
    """Four never-watermarked LeNet5-caffe (independent initialisations): the aligned null."""
    out = {}
    for s in (11, 12, 13, 14):
        torch.manual_seed(s)
        out[f"seed {s}"] = _trained(build_model("lenet5_caffe", "mnist"), f"indep-{s}")
    return out


def _readings(owner, key, values, others):
    """The paper's extraction, and ours: aligned, its threshold calibrated on the others aligned
    (a model of the null left out of its own calibration)."""
    null = {n: W.correlation(t.model, key, values, owner=owner.model)[0] for n, t in others.items()}

    def paper(t):
        return W.extract(t.model, key, values)

    def ours(t):
        return W.extract(t.model, key, values, owner=owner.model,
                         null=[r for n, r in null.items() if others[n].model is not t.model])
    return paper, ours, null


@pytest.fixture(scope="module")
def test_images():
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (64, 1, 28, 28), generator=gen, dtype=torch.uint8)
    return x


def test_tartaglione_extraction_erased_by_edits_and_restored_by_alignment(lenet, others, test_images):
    owner, key, values = lenet
    paper, ours, _ = _readings(owner, key, values, others)
    test = D.TensorData(test_images, predict(owner.model, test_images, fp32=True))
    table = zerocost.study(owner, paper, test, verify_aligned=ours)
    assert table.loc["none (the owner's file)", "score"] > 1 - 1e-6
    edited = table.iloc[1:]
    assert set(edited.index) == {"permute units", "scale units", "dummy units (zero)", "dummy units (clique)",
                                 "dummy units (split)", "all of them"}     # no batch norm in LeNet5-caffe
    # every edit keeps the predictions on the images (the same labels: accuracy 100 %), but for
    # near ties of this untrained network on noise, which float rounding decides (fp32)
    assert (edited["test accuracy"] >= 100.0 - near_tie_share(owner.model, test_images)).all()
    assert (edited["largest logit change"] < 1e-5).all()
    # the paper's reading: a permutation moves every key position, the correlation falls under the threshold
    for edit in ("permute units", "all of them"):
        assert table.loc[edit, "claimed"] == "no"
        assert abs(table.loc[edit, "score"]) < table.loc[edit, "threshold"]
    # aligned to the owner's file: each edit claimed, the permutation and scaling read back exactly
    # (measured on this untrained network: zero dummies 0.86, every other edit 1.000)
    assert (edited["claimed, aligned"] == "yes").all()
    assert (edited["score, aligned"] > 0.8).all()
    assert (edited.loc[["permute units", "scale units", "all of them"], "score, aligned"] > 1 - 1e-4).all()
    assert (table["threshold, aligned"] >= table["threshold"]).all()     # never below the paper's
    f = zerocost.erased_and_restored(table)
    assert f == {"erased": True, "restored": True, "accuracy kept": True}
    sentence = zerocost.finding(table)
    assert "every edited file is claimed" in sentence and "leave the file unclaimed" in sentence
    if (edited["test accuracy"] == 100.0).all():
        assert sentence.startswith("No edit changes the test accuracy by more than 0 points")


def test_extract_owner_argument_aligns_and_says_so(lenet, others):
    owner, key, values = lenet
    _, ours, null = _readings(owner, key, values, others)
    edited = attacks.zero_cost_edit(owner, seed=3)
    raw = W.extract(edited.model, key, values)
    with pytest.raises(ValueError, match="null is None"):     # an aligned reading without its null
        W.extract(edited.model, key, values, owner=owner.model)
    back = ours(edited)
    assert not raw.passed and raw.alignment is None
    assert back.passed and back.score > 1 - 1e-4
    assert back.threshold == max(W.threshold(len(key)), W.calibrated_threshold(list(null.values()))[0])
    assert "units moved" in back.alignment and "dummy units removed" in back.alignment
    assert "aligned:" in back.describe()


def test_calibrated_threshold_is_students_prediction_bound():
    null = [0.01, -0.02, 0.03, 0.0, -0.01]
    thr, mean, scale = W.calibrated_threshold(null, alpha=0.01)
    assert mean == pytest.approx(np.mean(null))
    assert scale == pytest.approx(np.std(null, ddof=1) * np.sqrt(1 + 1 / 5))
    assert thr == pytest.approx(mean + stats.t.ppf(0.99, 4) * scale)
    for bad in ([0.1, 0.2], [0.1, np.nan, 0.2, 0.3]):
        with pytest.raises(ValueError, match="at least 3"):
            W.calibrated_threshold(bad)


def test_alignment_on_every_weight_copies_the_payload_into_an_independent_model(lenet, others):
    """What the key's exclusion prevents: matched on every weight, an independent model aligned
    to the owner's file reads back a correlation far above the paper's threshold; with the key left
    out (the extraction's alignment), about 0."""
    owner, key, values = lenet
    t = others["seed 11"]
    full = W.read_values(aligned(t, owner).model, key).numpy()
    copied = stats.pearsonr(full, values.double().numpy()).statistic
    masked = W.correlation(t.model, key, values, owner=owner.model)[0]
    assert copied > 3 * W.threshold(len(key))
    assert abs(masked) < W.threshold(len(key))


def test_independent_models_aligned_are_not_claimed(lenet, others):
    """Matching an independent model's units to the owner's pulls its weights towards the owner's;
    with the key left out of the matching, none of them is claimed, aligned or not."""
    owner, key, values = lenet
    paper, ours, _ = _readings(owner, key, values, others)
    table = zerocost.independents(others, paper, ours)
    assert (table["claimed"] == "no").all() and (table["claimed, aligned"] == "no").all()
    assert zerocost.claimed_anyhow(table) == 0
    assert (table["score, aligned"].abs() < table["threshold"]).all()
    study = zerocost.study(owner, paper, D.TensorData(torch.zeros(1, 1, 28, 28, dtype=torch.uint8),
                                                      torch.zeros(1, dtype=torch.long)), verify_aligned=ours)
    assert "none is claimed" in zerocost.finding(study, table)


def test_smoothed_votes_batchnorm_rescaling_and_alignment(tmp_path, monkeypatch):
    """The certified watermarks' reading (votes of noisy copies of the file at a fixed σ): the
    batch-norm rescaling of the issue (every conv × 0.1, running statistics accordingly) keeps
    every prediction but makes σ ten times larger relative to those weights, and the matching rate
    collapses; aligned to the owner's file, the votes are the owner's again."""
    monkeypatch.setenv("WMLIB_CACHE", str(tmp_path))
    owner = train(TrainConfig(model="cifar_cnn", dataset="mnist", epochs=1, lr=0.05, n_train=512, seed=0),
                  progress=False)
    model = owner.model
    x = D.splits("mnist", n_train=10, n_attack=10, n_test=20).eval.x
    ip = TriggerSet(x, predict(model, x), "test images, the owner's labels")
    edited = attacks.rescale_batchnorm(owner, 0.1)
    assert edited.record["max_logit_change"] <= 1e-4 * edited.record["logit_scale"]
    sigma, m = 0.01, 30

    def mr(t, **kw):
        v = ipcert.smoothed_votes(t, ip, sigma=sigma, m=m, seed=0, **kw)
        return float((v.labels == ip.y.numpy()).mean())

    base = mr(owner)
    raw = mr(edited)
    back = mr(edited, owner=owner)
    assert base >= 0.9
    assert raw <= base - 0.5          # measured: 1.00 → 0.00
    assert back == pytest.approx(base, abs=0.05)
    # the aligned suspect is the owner's file up to float rounding
    a = aligned(edited, owner)
    gap = max(float((p - q).abs().max()) for p, q in zip(a.model.state_dict().values(), model.state_dict().values())
              if p.is_floating_point())
    assert gap < 1e-4
    assert np.isfinite(a.record["alignment"].distance) and a.record["alignment"].distance < 1e-3
    # votes on the aligned suspect are cached under the alignment's key: read again, nothing is aligned
    calls = []
    monkeypatch.setattr(ipcert, "aligned", lambda *a, **k: calls.append(1) or aligned(*a, **k))
    assert mr(edited, owner=owner) == back and calls == []


def _table(claimed, claimed_aligned, scores):
    """A study table by hand: the owner's file first, then two edits."""
    import pandas as pd
    return pd.DataFrame({"test accuracy": 90.0, "largest logit change": [0.0, 1e-7, 1e-7], "distance moved": 0.0,
                         "threshold": 0.5, "score": scores, "claimed": claimed, "threshold, aligned": 0.5,
                         "score, aligned": scores, "claimed, aligned": claimed_aligned, "alignment": "none"},
                        index=pd.Index(["none (the owner's file)", "permute units", "scale units"], name="edit"))


class _Checks:
    def __init__(self):
        self.rows = {}

    def add(self, name, holds, measured, target=None):
        self.rows[name] = holds


def test_checks_ask_for_the_owners_verdict_where_the_owners_file_is_not_claimed():
    unclaimed = _table(["no"] * 3, ["no"] * 3, [0.2, 0.2, 0.2])
    assert zerocost.verdicts_kept(unclaimed) == {"as read": True, "aligned": True, "owner claimed": False}
    c = _Checks()
    zerocost.add_checks(c, unclaimed, "M: ", as_read=True)
    assert all(c.rows.values()) and len(c.rows) == 2
    assert all(n.startswith("M: every zero-cost edit gets the owner's verdict") for n in c.rows)
    sentence = zerocost.finding(unclaimed)
    assert "not claimed at this profile" in sentence and "0 of 2 edits change its verdict" in sentence
    erased = _table(["yes", "no", "yes"], ["yes"] * 3, [0.9, 0.1, 0.9])
    c = _Checks()
    zerocost.add_checks(c, erased, as_read=True)
    assert c.rows == {"every zero-cost edit is claimed as the paper reads it": False,
                      "every zero-cost edit is claimed after alignment": True}
    c = _Checks()
    zerocost.add_checks(c, erased)                 # a certified reading: the aligned check only
    assert list(c.rows) == ["every zero-cost edit is claimed after alignment"]
    assert "1 of the 2 edits leaves the file unclaimed (permute units)" in zerocost.finding(erased)


def _null(read, aligned_):
    """An :func:`zerocost.independents` table with these verdicts (scores follow them)."""
    import pandas as pd
    return pd.DataFrame({"model": [f"m{i}" for i in range(len(read))], "threshold": 0.5, "score": [0.9 if r == "yes" else 0.1 for r in read],
                         "claimed": read, "threshold, aligned": 0.5,
                         "score, aligned": [0.9 if a == "yes" else 0.1 for a in aligned_],
                         "claimed, aligned": aligned_, "alignment": "permuted"}).set_index("model")


def test_null_checks_tell_a_false_claim_alignment_makes_from_one_the_scheme_makes():
    """A scheme whose own reading claims an independent model (IPGuard's fingerprints on MNIST) is
    not blamed on alignment; a claim only after alignment is, and the sentence says which."""
    study = _table(["yes", "no", "yes"], ["yes"] * 3, [0.9, 0.1, 0.9])
    clean, scheme_own, made = _null(["no", "no"], ["no", "no"]), _null(["yes", "no"], ["yes", "no"]), \
        _null(["no", "no"], ["no", "yes"])
    assert [zerocost.manufactured(t) for t in (clean, scheme_own, made)] == [0, 0, 1]
    assert [zerocost.claimed_anyhow(t) for t in (clean, scheme_own, made)] == [0, 1, 1]
    made_only = "M: alignment claims no independent model that the paper's reading does not"
    for table, read_ok, align_ok in ((clean, True, True), (scheme_own, False, True), (made, True, False)):
        c = _Checks()
        zerocost.add_null_checks(c, table, "M: ")
        assert c.rows == {made_only: align_ok, "M: no independent model is claimed as the paper reads it": read_ok}
        c = _Checks()
        zerocost.add_null_checks(c, table, read_claims_allowed=True)
        assert c.rows == {made_only[3:]: align_ok}
    assert "none is claimed (highest aligned score 0.1, against a threshold of 0.5), nor as read." \
        in zerocost.finding(study, clean)
    assert "read as they are, 1 is claimed already (m0): the scheme's own" in zerocost.finding(study, scheme_own)
    assert "1 of them only after alignment (m1): alignment manufactures" in zerocost.finding(study, made)


def test_a_transform_after_fine_tuning_reads_as_fine_tuning_alone(model_cache, lenet):
    """The thief fine-tunes, then edits the file at no cost: aligned to the owner's file, the
    edited copy reads as the fine-tuned one does (the alignment undoes the edit, not the
    fine-tuning), while the paper's reading of the edited copy falls below the threshold.
    Measured: fine-tuned 1.000 as read and 0.999 aligned; then every edit composed, 0.013 as read
    and 0.999 aligned (equal to fine-tuning alone to 1e-9)."""
    owner, key, values = lenet
    ft = attacks.fine_tune(owner, "FTAL", random_data("mnist", 200, seed=3), epochs=1, lr=0.01, batch_size=50,
                           progress=False)
    edited = zerocost.edits(ft, 0, only=("all of them",))["all of them"]
    ft_read = W.extract(ft.model, key, values).score
    ft_aligned = W.correlation(ft.model, key, values, owner=owner.model)[0]
    ed_read = W.extract(edited.model, key, values)
    ed_aligned = W.correlation(edited.model, key, values, owner=owner.model)[0]
    assert ft_read > 0.9 and abs(ft_aligned - ft_read) < 0.01            # fine-tuning alone: kept
    assert not ed_read.passed                                           # the edit erases it as read
    assert abs(ed_aligned - ft_aligned) < 1e-4                           # alignment: as fine-tuning alone
