"""Tartaglione et al. 2020: the weight watermark (wmlib.schemes.weights), its models and attacks."""
import copy

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn
from torch.nn import functional as F

from wmlib import attacks
from wmlib.models import Classifier, Normalize, build_model, count_parameters
from wmlib.schemes import weights as W
from wmlib.train import TrainConfig, Trained, fit

from conftest import needs_mnist, random_data


def tiny(seed: int = 0) -> Classifier:
    """A 1-channel classifier with every kind of parameter: conv weight and bias, BN affine, head."""
    torch.manual_seed(seed)
    feats = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten())
    return Classifier(Normalize((0.5,), (0.25,)), feats, nn.Linear(4, 10))


def as_trained(model, name="m"):
    return Trained(model, {"hash": name})


# ----------------------------------------------------------------------------- models
@pytest.mark.parametrize("name,dataset,params", [("lenet5_caffe", "mnist", 431_080),
                                                 ("resnet32", "cifar10", 464_154),
                                                 ("allcnn_c", "cifar10", 1_369_738)])
def test_new_models_build_with_the_stated_sizes(name, dataset, params):
    m = build_model(name, dataset).eval()
    size, c = (28, 1) if dataset == "mnist" else (32, 3)
    assert m(torch.rand(2, c, size, size)).shape == (2, 10)
    assert count_parameters(m) == params
    assert isinstance(m.head, nn.Linear)


def test_resnet32_has_32_layers_and_parameter_free_shortcuts():
    m = build_model("resnet32", "cifar10")
    convs = [x for x in m.modules() if isinstance(x, nn.Conv2d)]
    assert len(convs) + 1 == 32                       # 31 convolutions + the head
    assert all(x.kernel_size == (3, 3) for x in convs)  # option A: no 1x1 projection


# ----------------------------------------------------------------------------- payload and key
def test_payload_is_seeded_and_scaled():
    v = W.payload()
    assert len(v) == 3306 and torch.equal(v, W.payload())
    assert not torch.equal(v, W.payload(seed=1))
    assert float(v.abs().max()) <= 10 + 1e-5 and float(v.abs().max()) > 9.9


def test_key_covers_every_tensor_and_is_deterministic():
    m = tiny()
    total = count_parameters(m)
    key = W.make_key(m, n=int(0.9 * total), seed=3)
    assert key.tensors == {name for name, _ in m.named_parameters()}
    assert len(set(zip(key.names, key.index))) == len(key)            # no repeats
    sizes = dict((n, p.numel()) for n, p in m.named_parameters())
    assert all(0 <= i < sizes[n] for n, i in zip(key.names, key.index))
    assert W.make_key(tiny(seed=5), n=int(0.9 * total), seed=3) == key   # shapes only
    assert W.make_key(m, n=int(0.9 * total), seed=4).digest != key.digest


def test_key_draws_tensors_in_proportion_to_their_size():
    m = build_model("lenet5_caffe", "mnist")
    key = W.make_key(m, seed=0)
    sizes = {n: p.numel() for n, p in m.named_parameters()}
    hits = {n: key.names.count(n) for n in sizes}
    total = sum(sizes.values())
    # the largest tensor (fc 800x500) gets ~93% of the positions: a binomial 99.99% interval
    share = sizes["features.7.weight"] / total
    lo, hi = stats.binom.interval(0.9999, len(key), share)
    assert lo <= hits["features.7.weight"] <= hi
    assert hits["head.weight"] > 0


def test_key_rejects_too_many_positions():
    with pytest.raises(ValueError, match="n="):
        W.make_key(tiny(), n=10_000)


# ----------------------------------------------------------------------------- extraction
def test_extract_from_watermarked_and_clean_models():
    torch.manual_seed(0)
    m = build_model("lenet5_caffe", "mnist")
    key, v = W.make_key(m, seed=1), W.payload(seed=1)
    clean = W.extract(m, key, v)
    assert clean.p_value > 0.01 and not clean.passed and clean.n == 3306
    marked = copy.deepcopy(m)
    W.embed_values(marked, key, v)
    verdict = W.extract(marked, key, v)
    assert verdict.score == pytest.approx(1.0, abs=1e-6) and verdict.passed
    assert verdict.p_value < 1e-100
    assert torch.allclose(W.read_values(marked, key).float(), v)


def test_threshold_is_the_correlation_at_p_alpha():
    r = W.threshold(3306, 1e-6)
    t = r * np.sqrt(3304) / np.sqrt(1 - r * r)
    assert stats.t.sf(t, 3304) == pytest.approx(1e-6, rel=1e-6)
    assert 0.07 < r < 0.09


def test_constant_values_do_not_claim():
    m = tiny()
    key = W.make_key(m, n=20)
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
    v = W.extract(m, key, W.payload(20))
    assert v.score == 0 and v.p_value == 1 and not v.passed


# ----------------------------------------------------------------------------- embedding
FIT = dict(epochs=2, lr=0.1, momentum=0.9, weight_decay=1e-4, batch_size=50, schedule="constant",
           progress=False, device=torch.device("cpu"))


def test_naive_embedding_keeps_the_key_while_other_weights_train():
    data = random_data("mnist", 100)
    m = tiny()
    key, v = W.make_key(m, n=40, seed=0), W.payload(40)
    start = copy.deepcopy(m)
    W.embed_values(start, key, v)
    W.train_embedded(m, data, key, v, **FIT)
    assert torch.equal(W.read_values(m, key), W.read_values(start, key))
    free_moved = sum(int((a != b).sum()) for a, b in zip(m.parameters(), start.parameters()))
    assert free_moved > 0.9 * (count_parameters(m) - len(key))
    assert W.extract(m, key, v).score == pytest.approx(1.0, abs=1e-6)


def test_robust_embedding_keeps_the_key_and_differs_from_naive():
    data = random_data("mnist", 100)
    key, v = W.make_key(tiny(), n=40, seed=0), W.payload(40)
    naive, robust = tiny(), tiny()
    W.train_embedded(naive, data, key, v, **FIT)
    W.train_embedded(robust, data, key, v, robust=True, lam=1e-3, **FIT)
    assert torch.equal(W.read_values(robust, key), W.read_values(naive, key))
    assert any(not torch.equal(a, b) for a, b in zip(naive.parameters(), robust.parameters()))
    # lam = 0 is the naive embedding exactly (same batches and dropout: the replica draws aside)
    zero = tiny()
    W.train_embedded(zero, data, key, v, robust=True, lam=0.0, **FIT)
    assert all(torch.equal(a, b) for a, b in zip(naive.parameters(), zero.parameters()))


@pytest.fixture
def fp32(monkeypatch):
    """Train in fp32 (precision() is cached per process: cleared before and after)."""
    from wmlib import device
    monkeypatch.setenv("WMLIB_PRECISION", "fp32")
    device.precision.cache_clear()
    yield
    device.precision.cache_clear()


def test_robust_step_moves_free_weights_by_minus_lambda_mean_replica(fp32):
    """One step, σ = 0 (replicas = the pre-step model), no momentum or decay: the free weights end
    at W0 − lr·∇L(W0) − λ·(W0 + ascent_lr·∇L(W0)) (the authors' update_center). In fp32."""
    data = random_data("mnist", 64)
    key, v = W.make_key(tiny(), n=30, seed=2), W.payload(30)
    one = dict(FIT, epochs=1, batch_size=64, momentum=0.0, weight_decay=0.0)
    lam, lr = 0.05, 0.1
    robust = tiny()
    W.train_embedded(robust, data, key, v, robust=True, sigma=0.0, replicas=2, lam=lam, **one)
    ref = tiny()
    W.embed_values(ref, key, v)
    ref.train()
    loss = F.cross_entropy(ref(data.x.float() / 255), data.y)
    grads = torch.autograd.grad(loss, list(ref.parameters()))
    marked = set(zip(key.names, key.index))
    for (name, p0), g, p in zip(ref.named_parameters(), grads, robust.parameters()):
        want = p0.detach() - lr * g - lam * (p0.detach() + g)
        free = torch.tensor([(name, i) not in marked for i in range(p0.numel())]).view(p0.shape)
        assert torch.allclose(p.detach()[free], want[free], atol=1e-5), name


def test_robust_embedding_needs_its_criterion():
    emb = W.Embedding(W.make_key(tiny(), n=10), W.payload(10), robust=True)
    with pytest.raises(RuntimeError, match="criterion"):
        fit(tiny(), random_data("mnist", 20), after_step=emb, **dict(FIT, epochs=1))


def test_digest_names_the_variant():
    key, v = W.make_key(tiny(), n=10), W.payload(10)
    naive, robust = W.Embedding(key, v), W.Embedding(key, v, robust=True)
    assert naive.digest != robust.digest
    assert robust.digest != W.Embedding(key, v, robust=True, lam=1e-5).digest
    assert naive.digest == W.Embedding(key, v).digest


@needs_mnist
def test_watermark_is_cached_and_extracts(model_cache):
    cfg = TrainConfig("lenet5_caffe", "mnist", epochs=1, lr=0.1, momentum=0.0, weight_decay=1e-4,
                      schedule="constant", n_train=200)
    key, v = W.make_key(build_model("lenet5_caffe", "mnist")), W.payload()
    first = W.watermark(cfg, key, v, robust=True, progress=False)
    assert not first.record["cache_hit"]
    assert W.extract(first.model, key, v).score == pytest.approx(1.0, abs=1e-6)
    again = W.watermark(cfg, key, v, robust=True, progress=False)
    assert again.record["cache_hit"] and again.hash == first.hash
    assert W.watermark(cfg, key, v, progress=False).hash != first.hash


# ----------------------------------------------------------------------------- attacks
@pytest.mark.parametrize("bits", [1, 2, 4])
def test_quantize_leaves_at_most_2_to_the_b_values(bits):
    base = as_trained(build_model("lenet5_caffe", "mnist"))
    out = attacks.quantize(base, bits)
    for p, q in zip(base.model.parameters(), out.model.parameters()):
        assert len(torch.unique(q)) <= 2 ** bits
        p, q = p.detach(), q.detach()
        assert float(q.min()) == pytest.approx(float(p.min())) and float(q.max()) == pytest.approx(float(p.max()))
        step = float(p.max() - p.min()) / (2 ** bits - 1)
        assert float((q - p).abs().max()) <= step / 2 + 1e-6
    assert out.hash != attacks.quantize(base, bits + 1).hash
    with pytest.raises(ValueError, match="bits"):
        attacks.quantize(base, 0)


def test_quantize_8_bits_keeps_the_watermark():
    m = build_model("lenet5_caffe", "mnist")
    key, v = W.make_key(m), W.payload()
    W.embed_values(m, key, v)
    assert W.extract(attacks.quantize(as_trained(m), 8).model, key, v).score > 0.99


def test_reset_outliers_erases_a_payload_it_cannot_see():
    m = build_model("lenet5_caffe", "mnist")
    key, v = W.make_key(m), W.payload()
    W.embed_values(m, key, v)
    base = as_trained(m)
    fraction = 2 * len(key) / count_parameters(m)
    out = attacks.reset_outliers(base, fraction)
    changed = sum(int((a != b).sum()) for a, b in zip(m.parameters(), out.model.parameters()))
    assert changed == round(fraction * count_parameters(m))
    assert not W.extract(out.model, key, v).passed
    same = attacks.reset_outliers(base, 0.0)
    assert all(torch.equal(a, b) for a, b in zip(m.parameters(), same.model.parameters()))
    assert out.hash != same.hash
