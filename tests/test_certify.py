"""IPCert / median-smoothing certification (wmlib.certify): bounds, engine exactness, curves."""
import numpy as np
import pytest
import torch
from torch import nn
from scipy import stats

from wmlib import certify as C
from wmlib.models import build_model

CPU = torch.device("cpu")


def one_row(*head, classes=10):
    return np.array([list(head) + [0] * (classes - len(head))], dtype=np.int64)


# ----------------------------------------------------------------------------- IPCert bounds (Eq. 5)
def test_bounds_match_scipy_on_hand_counts():
    cert = C.majority_certificate(one_row(90, 8, 2), sigma=1.0, alpha=0.001)
    q = 0.001 / 10                                            # alpha / |Y|
    p_a = stats.beta.ppf(q, 90, 100 - 90 + 1)                 # B(q; m_A, m - m_A + 1)
    p_b = stats.beta.ppf(1 - q, 8 + 1, 100 - 8)               # label with count 8 is B
    radius = 0.5 * (stats.norm.ppf(p_a) - stats.norm.ppf(p_b))
    assert cert.label.tolist() == [0]
    assert cert.p_lower[0] == pytest.approx(p_a, rel=1e-12) and p_a == pytest.approx(0.74619, abs=1e-5)
    assert cert.p_upper[0] == pytest.approx(p_b, rel=1e-12) and p_b == pytest.approx(0.22626, abs=1e-5)
    assert cert.radius[0] == pytest.approx(radius, rel=1e-12) and radius == pytest.approx(0.70689, abs=1e-5)
    # radius scales linearly with sigma
    assert C.majority_certificate(one_row(90, 8, 2), sigma=0.01).radius[0] == pytest.approx(radius / 100)


def test_unanimous_votes_use_closed_forms():
    # m_A = m: p_A = q^(1/m); every other label has m_c = 0: p_c = 1 - q^(1/m) = Beta(1, m) quantile
    for m in (100, 10_000):
        cert = C.majority_certificate(one_row(m), sigma=1.0, alpha=0.001)
        q = 0.001 / 10
        assert cert.p_lower[0] == pytest.approx(q ** (1 / m), rel=1e-12)
        assert cert.p_upper[0] == pytest.approx(stats.beta.ppf(1 - q, 1, m), rel=1e-9)
        assert cert.p_upper[0] == pytest.approx(-np.expm1(np.log(q) / m), rel=1e-12)
        assert np.isfinite(cert.radius[0]) and cert.radius[0] > 0
    assert C.majority_certificate(one_row(100), sigma=1.0).p_upper[0] == pytest.approx(0.0879892, abs=1e-7)


def test_split_votes_are_not_certified():
    cert = C.majority_certificate(np.array([[50, 50], [51, 49], [100, 0]]), sigma=1.0)
    assert cert.label.tolist() == [0, 0, 0]                  # ties go to the smaller label
    assert cert.p_lower[0] <= 0.5 and cert.radius[0] == 0 and not cert.certified[0]
    assert cert.radius[1] == 0 and cert.certified.tolist() == [False, False, True]
    y = np.array([0, 0, 0])
    assert C.matching_rate(cert.label, y) == 1.0             # MR counts every majority vote ...
    assert C.certified_matching_rate(cert, y, 0.0) == pytest.approx(1 / 3)   # ... CMR(0) only r > 0


def test_certified_below_one_half_when_runner_up_is_far():
    # Lemma 4.1 needs p_A >= p_B, not p_A > 1/2: four classes, A with 40 % of 10,000 draws
    cert = C.majority_certificate(np.array([[4000, 2000, 2000, 2000]]), sigma=1.0)
    assert cert.p_lower[0] == pytest.approx(0.382988, abs=1e-6) and cert.p_lower[0] < 0.5
    assert cert.radius[0] == pytest.approx(0.247105, abs=1e-6)


def test_sigma_zero_certifies_nothing():
    cert = C.majority_certificate(one_row(100), sigma=0.0)
    assert cert.radius[0] == 0 and C.certified_matching_rate(cert, [0], 0.0) == 0.0


def test_cmr_curve_non_increasing_and_below_mr():
    rng = np.random.default_rng(0)
    counts = rng.multinomial(1000, [0.6, 0.3, 0.1], size=20) + 0
    counts[::3] = rng.multinomial(1000, [0.34, 0.33, 0.33], size=len(counts[::3]))
    y = np.where(np.arange(20) % 4 == 0, 1, 0)
    cert = C.majority_certificate(counts, sigma=0.5)
    radii = np.linspace(0, 1, 41)
    curve = C.certified_matching_rate(cert, y, radii)
    mr = C.matching_rate(cert.label, y)
    assert curve.shape == radii.shape and np.all(np.diff(curve) <= 0) and np.all(curve <= mr)
    assert curve[0] == np.mean((cert.label == y) & (cert.radius > 0)) and curve[-1] == 0
    assert C.certified_matching_rate(cert, y, 0.1) == curve[4]


# ----------------------------------------------------------------------------- Monte-Carlo engine
@pytest.fixture(scope="module", params=[("mnist_cnn", "mnist", (1, 28, 28), 0.02),
                                        ("cifar_cnn", "cifar10", (3, 32, 32), 0.2)],   # batch norm buffers
                ids=["mnist_cnn", "cifar_cnn_bn"])
def setup(request):
    """A random-weight model, 8 random uint8 IP images and labels, and a sigma that flips some votes."""
    name, dataset, shape, sigma = request.param
    torch.manual_seed(0)
    model = build_model(name, dataset)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (8, *shape), generator=g, dtype=torch.uint8)
    return model, x, torch.randint(0, 10, (8,), generator=g), sigma


@pytest.mark.parametrize("overlap", [False, True])
def test_engine_equals_reference_draw_for_draw(setup, overlap):
    model, x, y, sigma = setup
    model.train()                                            # the engine must switch to eval and back
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = C.noisy_votes(model, x, y, sigma=sigma, m=4, seed=7, overlap=overlap, device=CPU)
    slow = C.reference_votes(model, x, y, sigma=sigma, m=4, seed=7, device=CPU)
    assert np.array_equal(fast.counts, slow.counts) and fast.counts.dtype == np.int64
    assert np.array_equal(fast.draw_match, slow.draw_match)   # per-draw matching rates, draw by draw
    assert (fast.counts.sum(1) == 4).all() and fast.counts.shape == (8, 10)
    assert (fast.counts.max(1) < 4).any()                    # the noise really changes some labels
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())   # bit-identical
    # same seed, same votes (also chunked); another seed, other votes
    again = C.noisy_votes(model, x, y, sigma=sigma, m=4, seed=7, batch_size=5, device=CPU)
    assert np.array_equal(again.counts, fast.counts)
    other = C.noisy_votes(model, x, sigma=sigma, m=4, seed=8, device=CPU)
    assert not np.array_equal(other.counts, fast.counts) and other.draw_match is None


def test_engine_switching_overlap_keeps_votes():
    # a tiny classifier, many draws: overlap switched on and off mid-stream, and the speed-based default
    from wmlib.models import Classifier, Normalize
    torch.manual_seed(0)
    nn = torch.nn
    model = Classifier(Normalize((0.5,), (0.25,)), nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU()),
                       nn.Linear(8, 3))
    x, y = torch.rand(6, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    slow = C.reference_votes(model, x, y, sigma=0.3, m=300, seed=2, device=CPU)
    for overlap in (None, lambda j: j % 3 == 0):
        fast = C.noisy_votes(model, x, y, sigma=0.3, m=300, seed=2, overlap=overlap, device=CPU)
        assert np.array_equal(fast.counts, slow.counts) and np.array_equal(fast.draw_match, slow.draw_match)
    assert len(np.unique(slow.draw_match)) > 2


def test_sigma_zero_votes_for_clean_prediction(setup):
    model, x, y, _ = setup
    votes = C.noisy_votes(model, x, y, sigma=0.0, m=3, device=CPU)
    with torch.no_grad():
        clean = model.eval()(x.float() / 255).argmax(1).numpy()
    assert (votes.counts[np.arange(len(x)), clean] == 3).all()
    assert np.allclose(votes.draw_match, np.mean(clean == y.numpy()))
    assert np.array_equal(votes.labels, clean)


def test_engine_leaves_model_intact_on_error():
    torch.manual_seed(0)
    model = build_model("mnist_cnn", "mnist").train()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(RuntimeError):
        C.noisy_votes(model, torch.rand(4, 3, 28, 28), sigma=1.0, m=3, device=CPU)   # wrong channels
    assert model.training and all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_engine_input_errors():
    model = build_model("mlp", "mnist")
    x = torch.rand(4, 1, 28, 28)
    for kw, word in [({"sigma": -1.0, "m": 3}, "sigma"), ({"sigma": 1.0, "m": 0}, "m="),
                     ({"sigma": 1.0, "m": 2.5}, "m="), ({"sigma": 1.0, "m": 1, "seed": -1}, "seed")]:
        with pytest.raises(ValueError, match=word):
            C.noisy_votes(model, x, **kw)
    with pytest.raises(ValueError, match="y must have shape"):
        C.noisy_votes(model, x, torch.zeros(3, dtype=torch.long), sigma=1.0, m=1)


# ----------------------------------------------------------------------------- median smoothing (MS)
def test_median_certificate_on_known_sample():
    rates = np.random.default_rng(0).permutation(np.arange(1, 101) / 100)   # X_(k) = k / 100
    assert np.median(rates) == 0.505
    # R = 0: p = 1/2, largest k with P[Bin(100, 1/2) >= k] >= 0.999 is 35 (by hand with scipy below)
    for R, k in [(0.0, 35), (0.25, 25), (1.0, 6)]:
        p = stats.norm.cdf(-R)                                # sigma = 1
        assert stats.binom.sf(k - 1, 100, p) >= 0.999 > stats.binom.sf(k, 100, p)
        assert C.order_statistic_index(100, p, 0.001) == k
        assert C.median_certificate(rates, sigma=1.0, R=R, alpha=0.001) == pytest.approx(k / 100)
    radii = np.linspace(0, 3, 31)
    bounds = C.median_certificate(rates, sigma=1.0, R=radii)
    assert bounds.shape == radii.shape and np.all(np.diff(bounds) <= 0)
    assert np.all(bounds <= np.median(rates)) and bounds[-1] == 0     # no order statistic qualifies
    # sigma scales the radius: (sigma, R) and (2 sigma, 2 R) give the same bound
    assert C.median_certificate(rates, 2.0, 0.5) == C.median_certificate(rates, 1.0, 0.25)
    assert C.median_certificate(rates, 0.0, [0.0, 0.1]).tolist() == [0.35, 0.0]


def test_median_from_votes():
    votes = C.Votes(np.zeros((2, 10), np.int64), np.array([0.2, 0.9, 0.5]), 1.0, 3, 0)
    assert votes.median_match == 0.5
    with pytest.raises(ValueError, match="draw_match"):
        C.Votes(votes.counts, None, 1.0, 3, 0).median_match


def test_certificate_input_errors():
    with pytest.raises(ValueError, match="alpha"):
        C.majority_certificate(one_row(5, 5), sigma=1.0, alpha=1.0)
    with pytest.raises(ValueError, match="sigma"):
        C.majority_certificate(one_row(5, 5), sigma=-0.1)
    with pytest.raises(ValueError, match="same positive number of draws"):
        C.majority_certificate(np.array([[5, 5], [3, 3]]), sigma=1.0)
    with pytest.raises(ValueError, match="counts must be an integer array"):
        C.majority_certificate(np.array([[0.5, 0.5]]), sigma=1.0)
    cert = C.majority_certificate(one_row(5, 5), sigma=1.0)
    with pytest.raises(ValueError, match="y must have shape"):
        C.certified_matching_rate(cert, [0, 1], 0.0)
    with pytest.raises(ValueError, match="R="):
        C.certified_matching_rate(cert, [0], -1.0)
    with pytest.raises(ValueError, match="labels and y"):
        C.matching_rate([0, 1], [0])
    with pytest.raises(ValueError, match="alpha"):
        C.median_certificate([0.5], sigma=1.0, R=0.0, alpha=0.0)


def test_prefixes_are_the_votes_of_the_first_draws():
    """One pass of m draws gives the votes of a separate pass of m' < m, bit for bit (same noise order)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    x, y = torch.rand(7, 3, 2, 2), torch.randint(0, 5, (7,))
    full = C.noisy_votes(model, x, y, sigma=0.8, m=30, seed=4, prefixes=(5, 12))
    assert sorted(full.prefixes) == [5, 12]
    for k in (5, 12):
        alone = C.noisy_votes(model, x, y, sigma=0.8, m=k, seed=4)
        assert np.array_equal(full.prefixes[k].counts, alone.counts) and full.prefixes[k].m == k
        assert np.array_equal(full.prefixes[k].draw_match, alone.draw_match)
    with pytest.raises(ValueError, match="prefixes="):
        C.noisy_votes(model, x, y, sigma=0.8, m=10, seed=4, prefixes=(10,))
