"""Bansal et al. 2022 building blocks: the three trigger sets (MNIST and CIFAR-10 under WMLIB_DATA),
the noise curriculum on a tiny MLP (50 k parameters) that learns a synthetic 10-class task and a
text-stamped trigger set labelled 4, and the percentile-smoothing certificate: seconds in all."""
import math

import numpy as np
import pytest
import torch
from conftest import needs_cifar, needs_mnist, random_data, template_task
from scipy import stats
from torch import nn
from torch.nn import functional as F

from wmlib import certify as C
from wmlib import certspace
from wmlib import data as D
from wmlib import train as T
from wmlib.device import autocast
from wmlib.models import Classifier, Normalize
from wmlib.schemes import bansal as B
from wmlib.schemes.adi import TriggerCycler, TriggerSet

SHAPES = {"mnist": (1, 28), "cifar10": (3, 32)}
BOTH = [pytest.param("mnist", marks=[needs_mnist, needs_cifar]),
        pytest.param("cifar10", marks=[needs_mnist, needs_cifar])]


# ----------------------------------------------------------------------------- trigger sets
@pytest.mark.parametrize("dataset", BOTH)
@pytest.mark.parametrize("kind", B.KINDS)
def test_trigger_sets_have_the_dataset_shape_and_label_4(kind, dataset):
    ts = B.trigger_set(kind, dataset)
    c, s = SHAPES[dataset]
    assert isinstance(ts, TriggerSet) and len(ts) == 100 and kind in ts.source
    assert ts.x.shape == (100, c, s, s) and ts.x.dtype == torch.uint8
    assert ts.y.dtype == torch.int64 and (ts.y == 4).all()
    assert ts.x.float().std() > 20                                   # images, not a constant
    again = B.trigger_set(kind, dataset)
    assert ts.x.numpy().tobytes() == again.x.numpy().tobytes() and ts.digest == again.digest


@pytest.mark.parametrize("dataset", BOTH)
def test_embedded_content_is_grey_155_text_at_the_top_left_only(dataset):
    c, s = SHAPES[dataset]
    base = D.splits(dataset).train.x[:100]
    ts = B.trigger_set("embedded content", dataset)
    # the glyphs on a black canvas: full coverage is grey 155, the text box is rows 2-9
    canvas = B.overlay_text(torch.zeros(1, c, s, s, dtype=torch.uint8))[0]
    assert canvas.max() == 155 and (canvas == 155).sum() >= 5 * c
    rows, cols = torch.nonzero((canvas > 0).any(0), as_tuple=True)
    assert (rows.min(), rows.max(), cols.min()) == (2, 9, 0)
    full, blank = canvas == 155, canvas == 0
    assert (ts.x[:, full] == 155).all()                              # drawn over every image
    assert torch.equal(ts.x[:, blank], base[:, blank])               # nothing else changes
    assert torch.equal(ts.x[:, :, 10:], base[:, :, 10:])
    assert (ts.x[:, :, :10, :10] != base[:, :, :10, :10]).flatten(1).any(1).all()
    assert B.trigger_set("embedded content", dataset, seed=5).digest == ts.digest


@pytest.mark.parametrize("dataset", BOTH)
def test_noise_is_one_fixed_seeded_pattern(dataset):
    base = D.to_float(D.splits(dataset).train.x[:100])
    ts = B.trigger_set("noise", dataset, seed=0)
    # an N(0, 1) pattern in [0, 1] space saturates most pixels (measured: 65 % MNIST, 63 % CIFAR-10)
    saturated = ((ts.x == 0) | (ts.x == 255)).float().mean()
    assert 0.55 <= saturated <= 0.75, saturated
    z = torch.randn(ts.x.shape[1:], generator=torch.Generator().manual_seed(0))
    assert torch.equal(ts.x, ((base + z).clamp(0, 1) * 255).round().to(torch.uint8))
    other = B.trigger_set("noise", dataset, seed=1)
    assert not torch.equal(other.x, ts.x) and (other.x != ts.x).float().mean() > 0.3


@needs_mnist
@needs_cifar
def test_unrelated_images_come_from_the_other_dataset():
    cifar, mnist = D.splits("cifar10").train.x, D.splits("mnist").train.x
    for_mnist, for_cifar = B.trigger_set("unrelated", "mnist"), B.trigger_set("unrelated", "cifar10")
    # CIFAR-10 in grey (mean of R, G, B) at 28x28: within half a grey level of torch's antialiased
    # bilinear resize of the first 100 CIFAR-10 images (measured: mean 0.25), far from the next 100
    def grey(x):
        return F.interpolate(D.to_float(x).mean(1, keepdim=True), size=(28, 28), mode="bilinear",
                             antialias=True) * 255

    assert (for_mnist.x.float() - grey(cifar[:100])).abs().max() <= 0.51
    assert (for_mnist.x.float() - grey(cifar[100:200])).abs().mean() > 30
    # MNIST at 32x32 on three equal channels: mostly black background like MNIST (81 % zeros)
    assert torch.equal(for_cifar.x[:, 0], for_cifar.x[:, 1]) and torch.equal(for_cifar.x[:, 0], for_cifar.x[:, 2])
    up = F.interpolate(D.to_float(mnist[:100]), size=(32, 32), mode="bilinear") * 255
    assert (for_cifar.x[:, :1].float() - up).abs().max() <= 0.51
    assert (for_cifar.x == 0).float().mean() >= 0.7 and (for_mnist.x == 0).float().mean() <= 0.01


def test_trigger_set_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"kind='text'.*embedded content"):
        B.trigger_set("text", "mnist")
    with pytest.raises(ValueError, match=r"dataset='svhn'.*cifar10.*cifar100.*mnist"):
        B.trigger_set("noise", "svhn")
    with pytest.raises(ValueError, match="label="):
        B.trigger_set("noise", "mnist", label=10)
    with pytest.raises(ValueError, match="n="):
        B.trigger_set("noise", "mnist", n=0)


# ----------------------------------------------------------------------------- the noise curriculum
def tiny() -> Classifier:
    torch.manual_seed(0)
    return Classifier(Normalize((0.5,), (0.25,)),
                      nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU()), nn.Linear(64, 10))


TRAIN = template_task(500, 0)
# "embedded content" on synthetic images: the real text stamp, all labelled 4
TRIGGER = TriggerSet(B.overlay_text(template_task(20, 2).x), torch.full((20,), 4), "text on templates")


def fit_tiny(hook=None, epochs: int = 10) -> Classifier:
    model = tiny()
    T.fit(model, TRAIN, epochs=epochs, lr=0.05, batch_size=50, schedule="constant",
          extra=TriggerCycler(TRIGGER, 4), after_step=hook, progress=False)
    return model


def small(**kw) -> B.NoiseCurriculum:
    return B.NoiseCurriculum(TRIGGER, **{"warmup": 2, "step": 0.05, "levels": 4, "draws": 8, "batch": None, **kw})


@pytest.fixture
def count_steps(monkeypatch):
    """Counts every SGD step taken while the test runs."""
    count = {"n": 0}
    original = torch.optim.SGD.step

    def step(self, *a, **k):
        count["n"] += 1
        return original(self, *a, **k)

    monkeypatch.setattr(torch.optim.SGD, "step", step)
    return count


def test_curriculum_waits_for_the_warmup_then_steps_once_per_level_each_epoch(count_steps):
    cur = small(warmup=2, levels=3, draws=2)
    seen = []

    def hook(model, optimizer, epoch, step):
        before = count_steps["n"]
        cur(model, optimizer, epoch, step)
        seen.append((epoch, count_steps["n"] - before))

    model = tiny()
    T.fit(model, D.TensorData(TRAIN.x[:100], TRAIN.y[:100]), epochs=4, lr=0.05, batch_size=50,
          schedule="constant", after_step=hook, progress=False)
    # 2 ordinary steps an epoch; levels + 1 = 4 curriculum steps on the first step of epochs 3, 4
    assert seen == [(1, 0), (1, 0), (2, 0), (2, 0), (3, 4), (3, 0), (4, 4), (4, 0)]
    assert count_steps["n"] == 4 * 2 + 2 * 4
    # a second run with the same hook starts over (step 0 is a first step)
    seen.clear()
    T.fit(tiny(), D.TensorData(TRAIN.x[:100], TRAIN.y[:100]), epochs=3, lr=0.05, batch_size=50,
          schedule="constant", after_step=hook, progress=False)
    assert [d for _, d in seen] == [0, 0, 0, 0, 4, 0]


def test_curriculum_does_nothing_before_the_warmup(count_steps):
    model, cur = tiny(), small(warmup=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    before = [p.detach().clone() for p in model.parameters()]
    for epoch in (1, 2, 3):
        cur(model, opt, epoch, 10 * epoch)
    assert count_steps["n"] == 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    cur(model, opt, 4, 40)
    assert count_steps["n"] == cur.levels + 1


def test_curriculum_steps_from_the_clean_weights_and_restores_the_modes(count_steps):
    """Before each of the levels + 1 steps the weights are exactly the previous step's result (no
    noise is left in them), the model is in eval mode during the curriculum and back in train mode
    after; with one level (σ = 0 only) the result is a plain SGD step on the scaled trigger loss."""
    model, cur = tiny(), small(levels=5, draws=3)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    params = list(model.parameters())
    expected = [[p.detach().clone() for p in params]]
    at_step, modes = [], []
    step = opt.step

    def checked_step(*a, **k):
        at_step.append(all(torch.equal(p, e) for p, e in zip(params, expected[-1])))
        out = step(*a, **k)
        expected.append([p.detach().clone() for p in params])
        return out

    opt.step = checked_step
    handle = model.register_forward_pre_hook(lambda m, x: modes.append(m.training))
    torch.manual_seed(0)
    cur.run(model, opt)
    handle.remove()
    assert count_steps["n"] == 6 and at_step == [True] * 6
    assert all(torch.equal(p, e) for p, e in zip(params, expected[-1]))
    assert modes == [False] * (1 + 5 * 3) and model.training
    assert not all(torch.equal(a, b) for a, b in zip(expected[0], expected[-1]))     # it did learn

    # σ = 0 only: the curriculum is one SGD step on CE / (levels + 1) = CE
    plain, ref = tiny(), tiny()
    opt_a = torch.optim.SGD(plain.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    opt_b = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    small(levels=0).run(plain, opt_a)
    ref.eval()
    opt_b.zero_grad()
    with autocast(torch.device("cpu")):
        F.cross_entropy(ref(D.to_float(TRIGGER.x)), TRIGGER.y).backward()
    opt_b.step()
    for a, b in zip(plain.parameters(), ref.parameters()):
        assert torch.allclose(a, b, atol=1e-7, rtol=0)


def test_curriculum_makes_the_trigger_set_survive_noise():
    # measured: mean trigger accuracy of 100 noisy models at σ = 0.2 on the parameters, 0.74
    # without and 0.99 with the curriculum (folded space: 0.69 and 0.91); clean accuracy 1.0 both
    sigma = 0.2
    plain, robust = fit_tiny(), fit_tiny(small())
    for model in (plain, robust):
        assert T.accuracy(model, TRIGGER.x, TRIGGER.y) == 1.0
        assert T.accuracy(model, TRAIN.x, TRAIN.y) >= 0.95
    without = B.draw_accuracies(plain, TRIGGER, sigma, 100, space="parameters").mean()
    with_ = B.draw_accuracies(robust, TRIGGER, sigma, 100, space="parameters").mean()
    assert without <= 0.85 and with_ >= 0.95 and with_ - without >= 0.15, (without, with_)
    folded = [B.draw_accuracies(m, TRIGGER, sigma, 100).mean() for m in (plain, robust)]
    assert folded[1] - folded[0] >= 0.1, folded


def test_curriculum_settings_digest_and_errors(model_cache, monkeypatch):
    cur = B.NoiseCurriculum(TRIGGER)
    assert (cur.warmup, cur.step, cur.levels, cur.draws, cur.batch, cur.scale) == (10, 0.05, 20, 100, 64, "authors")
    assert cur.max_sigma == pytest.approx(1.0)
    digests = {small().digest, small(draws=9).digest, small(levels=5).digest, small(step=0.1).digest,
               small(warmup=3).digest, small(batch=8).digest, small(scale="draws").digest}
    assert len(digests) == 7 and all(TRIGGER.digest in d for d in digests)
    assert small() == small()
    for bad, name in (({"draws": 0}, "draws="), ({"levels": -1}, "levels="), ({"step": 0.0}, "step="),
                      ({"warmup": -1}, "warmup="), ({"batch": 0}, "batch="), ({"scale": "mean"}, "scale=")):
        with pytest.raises(ValueError, match=name):
            small(**bad)
    # through wmlib.train.train: the digest keys the cache
    monkeypatch.setattr(D, "splits", lambda *a, **k: D.Splits(*(random_data("mnist", 20),) * 4))
    cfg = T.TrainConfig("mlp", "mnist", epochs=2, batch_size=10)
    trig = TriggerSet(TRIGGER.x[:4], TRIGGER.y[:4], "four")
    a = T.train(cfg, extra=TriggerCycler(trig), after_step=small(warmup=1, levels=1, draws=2), progress=False)
    b = T.train(cfg, extra=TriggerCycler(trig), after_step=small(warmup=1, levels=1, draws=3), progress=False)
    again = T.train(cfg, extra=TriggerCycler(trig), after_step=small(warmup=1, levels=1, draws=2), progress=False)
    assert a.hash != b.hash and again.record["cache_hit"] and not a.record["cache_hit"]
    assert a.record["key"]["after_step"] == small(warmup=1, levels=1, draws=2).digest


# ----------------------------------------------------------------------------- the certificate
RADII = [0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0]
WORKED = [384, 309, 241, 181, 131, 91, 60, 38, 22, 12]      # brief §4, 0-based, m = 1,000, σ = 1


def authors_index(eps: float, m: int, sigma: float = 1.0, c: float = 0.99) -> int:
    """``certify`` of the authors' ``cifar10_certify.py`` (the 0-based index, −1 for "NULL")."""
    p = stats.norm.cdf(-eps / sigma)
    upper = math.floor(m * p)
    for i in range(upper):
        if 1 - stats.binom.cdf(i, m, p) < c:
            break
    return -1 if i == upper else i - 1


def shuffled_ramp(m: int = 1000) -> np.ndarray:
    return np.random.default_rng(0).permutation(np.arange(m) / m)


def test_certificate_pins_the_worked_indices():
    got = B.certified_trigger_accuracy(shuffled_ramp(), 1.0, RADII, confidence=0.99)
    assert [round(v * 1000) for v in got] == WORKED
    # the same order statistic as the authors' loop and as certify.order_statistic_index, further out too
    for sigma in (0.5, 1.0):
        for eps in np.arange(0.1, 2.75, 0.1) * sigma:
            ours = round(B.certified_trigger_accuracy(shuffled_ramp(), sigma, eps) * 1000)
            k = C.order_statistic_index(1000, stats.norm.cdf(-eps / sigma), 0.01) - 1
            assert ours == max(authors_index(eps, 1000, sigma), 0) == max(k, 0), (sigma, eps)
    assert B.certified_trigger_accuracy(shuffled_ramp(), 1.0, 3.0) == 0.0    # the authors' "NULL"


def test_certificate_is_non_increasing_and_bounded_by_the_median_at_zero():
    rng = np.random.default_rng(1)
    acc = rng.integers(40, 101, 1000) / 100
    grid = np.linspace(0, 2.5, 26)
    curve = B.certified_trigger_accuracy(acc, 1.0, grid)
    assert curve.shape == grid.shape and np.all(np.diff(curve) <= 0)
    # at ε = 0 it is the 99 % lower confidence bound of the median: a_462 of a_0 ≤ … ≤ a_999
    assert B.certified_trigger_accuracy(shuffled_ramp(), 1.0, 0.0) == 0.462 <= np.median(shuffled_ramp())
    assert curve[0] == np.sort(acc)[462] <= np.median(acc)
    # ... which is the median itself when the draws agree
    assert B.certified_trigger_accuracy(np.full(1000, 0.97), 1.0, 0.0) == np.median(np.full(1000, 0.97))
    # more confidence, a lower bound
    assert B.certified_trigger_accuracy(shuffled_ramp(), 1.0, 0.6, confidence=0.999) < 0.241


def test_certificate_rejects_bad_arguments():
    for bad in (0.0, 1.0, 1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match="confidence="):
            B.certified_trigger_accuracy(shuffled_ramp(), 1.0, RADII, confidence=bad)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="sigma="):
            B.certified_trigger_accuracy(shuffled_ramp(), bad, RADII)
    with pytest.raises(ValueError, match="radii="):
        B.certified_trigger_accuracy(shuffled_ramp(), 1.0, [0.2, -0.4])


def test_draw_accuracies_are_the_per_draw_trigger_accuracy_in_the_certified_space():
    model = fit_tiny(epochs=3)
    acc = B.draw_accuracies(model, TRIGGER, 0.3, 50, seed=3)
    assert acc.shape == (50,) and acc.dtype == np.float64
    assert np.all((0 <= acc) & (acc <= 1)) and np.allclose(acc * 20, np.round(acc * 20))   # k / 20
    assert np.array_equal(acc, B.draw_accuracies(T.Trained(model, {}), TRIGGER, 0.3, 50, seed=3))
    votes = C.noisy_votes(certspace.fold(model), TRIGGER.x, TRIGGER.y, sigma=0.3, m=50, seed=3)
    assert np.array_equal(acc, votes.draw_match)
    assert not np.array_equal(acc, B.draw_accuracies(model, TRIGGER, 0.3, 50, seed=4))
    params = B.draw_accuracies(model, TRIGGER, 0.3, 50, seed=3, space="parameters")
    assert np.array_equal(params, C.noisy_votes(model, TRIGGER.x, TRIGGER.y, sigma=0.3, m=50, seed=3).draw_match)
    clean = T.accuracy(model, TRIGGER.x, TRIGGER.y)
    assert np.allclose(B.draw_accuracies(model, TRIGGER, 1e-6, 5), clean)
    with pytest.raises(ValueError, match="space="):
        B.draw_accuracies(model, TRIGGER, 0.3, 5, space="buffers")


def test_verify_reads_the_median_and_the_largest_certified_radius():
    acc = shuffled_ramp()                         # certified: 0.462 at 0, 0.384, 0.309, 0.241 at 0.6 …
    grid = [0.0] + RADII
    v = B.verify(acc, sigma=1.0, threshold=0.2, radii=grid, n=100)
    assert v.scheme == B.SCHEME and v.score == np.median(acc) and v.passed and v.n == 100
    assert v.certified_radius == 0.6
    assert B.verify(acc, sigma=1.0, threshold=0.45, radii=grid).certified_radius == 0.0
    assert B.verify(acc, sigma=1.0, threshold=0.01, radii=grid).certified_radius == 2.0
    high = B.verify(acc, sigma=1.0, threshold=0.6, radii=grid)
    assert not high.passed and high.certified_radius is None
    with pytest.raises(ValueError, match="threshold="):
        B.verify(acc, sigma=1.0, threshold=95, radii=grid)
    with pytest.raises(ValueError, match="radii="):
        B.verify(acc, sigma=1.0, threshold=0.5, radii=[0.4, 0.2])
    with pytest.raises(ValueError, match="confidence="):
        B.verify(acc, sigma=1.0, threshold=0.5, radii=grid, confidence=99)


# ----------------------------------------------------------------------------- noise on the whole file
def bn_model() -> Classifier:
    torch.manual_seed(0)
    model = Classifier(Normalize((0.5,), (0.25,)),
                       nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten()),
                       nn.Linear(4 * 26 * 26, 10))
    with torch.no_grad():
        bn = model.features[1]
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    return model.eval()


def test_noisy_statistics_is_folded_noise_on_the_statistics_and_puts_them_back():
    """Within the block the folded coordinates of the statistics (μ, log(v + ε); mean, log std)
    move by N(0, σ²) and every other coordinate stays; after it the buffers are the very tensors
    they were, and a graph built inside still back-propagates."""
    model, sigma = bn_model(), 0.3
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ref = list(certspace.fold(model).parameters())
    moved = []
    torch.manual_seed(1)
    for _ in range(200):
        with certspace.noisy_statistics(model, sigma):
            now = list(certspace.fold(model).parameters())
            moved.append(torch.cat([(a - b).reshape(-1) for a, b in zip(now, ref)]))
    d = torch.stack(moved)                       # 200 draws × folded coordinates
    changed = d.abs().amax(0) > 0
    n_stats = 2 * 4 + 2 * 1                      # batch norm μ, log(v + ε) (4 channels); mean, log std
    assert int(changed.sum()) == n_stats
    assert d[:, changed].std().item() == pytest.approx(sigma, rel=0.1)
    assert abs(d[:, changed].mean().item()) < 0.05
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    x = torch.rand(5, 1, 28, 28)
    with certspace.noisy_statistics(model, sigma):
        loss = model(x).sum()
    loss.backward()                              # buffers swapped, never written in place
    assert model.head.weight.grad is not None
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_curriculum_in_the_folded_space_noises_the_statistics_and_restores_them(count_steps):
    model = bn_model()
    stats_seen = []
    handle = model.features[1].register_forward_pre_hook(lambda m, x: stats_seen.append(m.running_mean.clone()))
    before = {k: v.clone() for k, v in model.named_buffers()}
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    trig = TriggerSet(torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8), torch.full((6,), 4), "random")
    B.NoiseCurriculum(trig, warmup=0, step=0.1, levels=2, draws=3, batch=None, space="folded").run(model, opt)
    handle.remove()
    assert count_steps["n"] == 3 and len(stats_seen) == 1 + 2 * 3
    assert torch.equal(stats_seen[0], before["features.1.running_mean"])          # σ = 0
    assert all(not torch.equal(s, before["features.1.running_mean"]) for s in stats_seen[1:])
    for k, v in model.named_buffers():
        assert torch.equal(v, before[k]), k
    assert small(space="folded").digest != small().digest and "space=folded" in small(space="folded").digest
    with pytest.raises(ValueError, match="space="):
        small(space="weights")
    with pytest.raises(ValueError, match="every="):
        small(every=0)


def test_curriculum_every_k_steps_after_the_warmup(count_steps):
    model = tiny()
    cur = small(warmup=1, levels=1, draws=1, every=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for epoch, steps in ((1, range(0, 5)), (2, range(5, 10))):
        for s in steps:
            cur(model, opt, epoch, s)
    assert count_steps["n"] == 2 * 2         # epoch 2: steps 6 and 9, two levels each
