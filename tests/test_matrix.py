"""The scheme × attack evaluation: thresholds calibrated on never-watermarked hosts and false claims
measured on them (against scipy), and the cell rule. The matrix end to end runs as the smoke notebook
(two schemes × three attacks) and is read on the built page (tests/test_book.py)."""
import numpy as np
import pytest
from scipy import stats

from wmlib import matrix
from wmlib.train import train

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


@pytest.fixture(scope="module")
def owners():
    return {"adi": matrix.embed("adi", P, "mnist")}


def test_a_cell_is_removed_only_when_the_verdict_flips_and_accuracy_stays(owners):
    """Three stand-in attacks on the Adi owner: the owner itself (survived), a never-watermarked host
    (not claimed, same accuracy: removed) and an untrained model (not claimed, accuracy lost: at a cost)."""
    from wmlib import data as D
    from wmlib.train import TrainConfig, evaluate
    o = owners["adi"]
    split = D.splits("mnist", n_train=P.n_train, n_attack=P.n_attack, n_test=P.n_test)
    ctx = matrix.Context(P, split.attack, None, 0)
    acc = 100 * evaluate(o.trained, split.eval)
    other = train(P.host("mnist", 9))
    blank = train(TrainConfig(model=P.model, dataset="mnist", epochs=0, n_train=P.n_train, seed=9))
    got = {name: matrix.cell(o, matrix.Attack(name, "nothing", lambda _o, _c, m=m: m), ctx, split.eval, acc)["cell"]
           for name, m in (("none", o.trained), ("independent", other), ("blank", blank))}
    assert got == {"none": "survived", "independent": "removed", "blank": "removed at a cost"}
