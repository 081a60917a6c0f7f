"""The scheme × attack evaluation: thresholds calibrated on never-watermarked hosts and false claims
measured on them (against scipy), and the cell rule. The matrix end to end runs as the smoke notebook
(two schemes × three attacks) and is read on the built page (tests/test_book.py)."""
import numpy as np
import pytest
from scipy import stats

from wmlib import matrix
from wmlib.models import build_model

# the hosts of tests/test_verify.py (same configuration: shared through the cache)
P = matrix.MatrixSettings(epochs=6, n_train=1000, n_independent=4, n_trigger=20, per_batch=10,
                          tartaglione_positions=300, draws=20, n_attack=500, n_test=1000, paper_profile="smoke",
                          ft_lrs=(0.001, 0.01))


def test_calibrated_threshold_is_the_t_prediction_bound():
    null = [0.10, 0.14, 0.12, 0.09, 0.11]
    n, m, sd = 5, np.mean(null), np.std(null, ddof=1)
    want = m + stats.t.ppf(0.99, n - 1) * sd * np.sqrt(1 + 1 / n)
    assert matrix.calibrated_threshold(null, 0.01, 0.05) == pytest.approx(want)
    assert matrix.calibrated_threshold([0.1, 0.1, 0.1], 0.01, 0.05) == pytest.approx(0.15)   # all equal: one step up
    with pytest.raises(ValueError, match="at least 3"):
        matrix.calibrated_threshold([0.1, 0.2], 0.01, 0.05)


def test_false_claims_are_measured_leaving_each_host_out():
    """An outlier among the never-watermarked hosts is claimed against the threshold of the others: the
    measured rate says so where a threshold derived from all of them would hide it."""
    null = [0.10, 0.11, 0.12, 0.10, 0.60]
    n, thr = matrix.false_claims(null, 0.01, 0.05)
    assert n == 1 and null[4] >= thr[4] and all(s < t for s, t in zip(null[:4], thr[:4]))
    assert thr[4] == pytest.approx(matrix.calibrated_threshold(null[:4], 0.01, 0.05))
    n, _ = matrix.false_claims(null, 0.01, 0.05, derived=0.7)           # the scheme's own threshold is stricter
    assert n == 0


def test_settings_refuse_too_few_hosts_and_a_bad_rate():
    with pytest.raises(ValueError, match="n_independent=3"):
        matrix.MatrixSettings(n_independent=3)
    with pytest.raises(ValueError, match="alpha=1.5"):
        matrix.MatrixSettings(alpha=1.5)


def test_a_cell_is_removed_only_when_the_verdict_flips_and_accuracy_stays():
    """Stand-in attacks on a stand-in Adi owner (a lookup model answering the trigger labels): the owner
    itself survives; a model answering other labels with the owner's accuracy is a removal; the same model
    against an owner 10 points more accurate is a removal at a cost (margin 5)."""
    from conftest import LookupModel, template_task
    from wmlib import keys
    from wmlib.schemes import adi
    from wmlib.train import Trained, evaluate
    trig = adi.procedural_trigger("mnist", n=20, seed=0)
    key = keys.adi_key(trig, dataset="mnist", architecture="cifar_cnn", threshold=0.5)
    owner = Trained(LookupModel(trig.x, trig.y), {"hash": "lookup-owner-20"})
    other = Trained(LookupModel(trig.x, (trig.y + 1) % 10), {"hash": "lookup-other-20"})
    o = matrix.Owner("adi", owner, key, [0.1] * 4, 0, "black-box", 0.0)
    test = template_task(200, seed=5)
    ctx = matrix.Context(P, test, None, 0)
    acc = 100 * evaluate(other, test)
    assert acc == pytest.approx(100 * evaluate(owner, test))       # both answer 0 off the trigger set

    def outcome(model, owner_acc):
        return matrix.cell(o, matrix.Attack("stand-in", "nothing", lambda _o, _c: model), ctx, test, owner_acc)

    assert outcome(owner, acc)["cell"] == "survived"
    removed = outcome(other, acc)
    assert removed["cell"] == "removed" and not removed["claimed"] and removed["score"] == 0
    assert outcome(other, acc + P.margin + 5)["cell"] == "removed at a cost"
    assert outcome(other, acc + P.margin - 1)["cell"] == "removed"


def test_the_overwriting_column_embeds_a_watermark_of_the_same_scheme_at_the_attackers_seed():
    """Adi / IPCert / Bansal: a trigger set of the scheme's kind, other images than the owner's; Tartaglione: a
    payload at other positions (frontier keys need the stolen model: the smoke matrix runs no overwriting)."""
    from wmlib.schemes import adi, weights
    owner_trigger = matrix._trigger(P, "mnist", 0)
    for scheme in ("adi", "ipcert", "bansal"):
        own = matrix._own_mark(scheme, P, "mnist", 0)(None, None)
        assert isinstance(own, adi.TriggerCycler) and own.per_batch == P.per_batch, scheme
        assert own.trigger.digest != owner_trigger.digest and len(own.trigger) == P.n_trigger, scheme
    own = matrix._own_mark("tartaglione", P, "mnist", 0)(None, None)
    mine = weights.make_key(build_model(P.model, "mnist"), n=P.tartaglione_positions, seed=0)
    assert isinstance(own, weights.Payload) and len(own.key) == P.tartaglione_positions and own.key != mine
    assert "overwriting with the attacker's own watermark" in [a.name for a in matrix.ATTACKS]
    with pytest.raises(ValueError, match="scheme='nope'"):
        matrix._own_mark("nope", P, "mnist", 0)


def test_a_cell_near_its_threshold_runs_again_at_a_second_seed():
    """Stand-in attack whose result depends on the seed: a cell within ``near`` of the threshold runs
    again at seed + 1 (and a different outcome there is reported), a cell far from it does not, nor a
    deterministic attack on a black-box scheme; the paragraph and the figure say so."""
    import pandas as pd
    from conftest import LookupModel, template_task
    from wmlib import keys
    from wmlib.papers import matrix as steps
    from wmlib.schemes import adi
    from wmlib.train import Trained, evaluate
    trig = adi.procedural_trigger("mnist", n=20, seed=0)
    key = keys.adi_key(trig, dataset="mnist", architecture="cifar_cnn", threshold=0.5)

    def answering(k):                     # a model that answers the first k trigger images correctly
        y = trig.y.clone()
        y[k:] = (y[k:] + 1) % 10
        return Trained(LookupModel(trig.x, y), {"hash": f"lookup-{k}-of-20"})
    o = matrix.Owner("adi", answering(20), key, [0.1] * 4, 0, "black-box", 0.0)
    test = template_task(200, seed=5)
    acc = 100 * evaluate(o.trained, test)
    ctx = matrix.Context(P, test, None, 0)
    seeded = matrix.Attack("stand-in", "nothing", lambda _o, c: answering(11 if c.seed == 0 else 9))  # 0.55 | 0.45
    fixed = matrix.Attack("stand-in, fixed", "nothing", lambda _o, c: answering(11), seeded=False)
    far = matrix.Attack("stand-in, far", "nothing", lambda _o, c: answering(20 if c.seed == 0 else 0))
    near = matrix.second_seed(matrix.cell(o, seeded, ctx, test, acc), o, seeded, ctx, test, acc)
    assert matrix.is_near(near, P.near) and near["cell"] == "survived"
    assert near["second seed"] == "removed" and near["second score"] == pytest.approx(0.45)
    for attack in (fixed, far):
        c = matrix.second_seed(matrix.cell(o, attack, ctx, test, acc), o, attack, ctx, test, acc)
        assert "second seed" not in c, attack.name
    cells = pd.DataFrame([near, matrix.cell(o, far, ctx, test, acc)])
    schemes = pd.DataFrame({"owner claimed": [True], "false claims": ["0 of 4"]}, index=["adi"])
    text = steps.finding(cells, schemes, P)
    assert "1 cell lay within 0.1 of the threshold and ran at a second seed: 1 changed outcome there" in text
    assert steps.rechecked(cells) == (1, 0) and "!" in steps._mark(cells.iloc[0]) and steps._mark(cells.iloc[1]) == ""
    agreeing = cells.assign(**{"second seed": ["survived", None]})
    assert "it kept its outcome" in steps.finding(agreeing, schemes, P)
    assert "at a second seed" in steps.table(cells).columns
    with pytest.raises(ValueError, match="near=-1"):
        matrix.MatrixSettings(near=-1)


def test_training_minutes_count_the_hosts_and_the_owners_not_the_attacks(monkeypatch):
    """What the results record calls the training of the models used (as the papers' notebooks count it):
    the clean host, each never-watermarked host and each scheme's watermarked host, from their records."""
    import pandas as pd
    from wmlib.train import Trained
    seconds = iter(60.0 * (i + 1) for i in range(P.n_independent + 1))     # the hosts: 1, 2, … minutes
    monkeypatch.setattr(matrix, "train", lambda cfg, progress=False: Trained(None, {"seconds": next(seconds)}))
    schemes = pd.DataFrame({"training (min)": [2.0, 3.0]}, index=["adi", "tartaglione"])
    n = P.n_independent + 1
    assert matrix.training_minutes(P, "mnist", schemes) == pytest.approx(n * (n + 1) / 2 + 5.0)
