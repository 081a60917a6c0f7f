"""The certified space (wmlib.certspace) and the buffer-only attack: folding keeps outputs, buffer
edits count in the distance, and the sound certificate holds where the parameter-only one breaks.
A tiny MLP with batch norm on a synthetic task: seconds, no dataset."""
import numpy as np
import pytest
import torch
from torch import nn

from wmlib import attacks as A
from wmlib import certify as C
from wmlib import certspace as S
from wmlib import train as T
from wmlib.models import Classifier, Normalize, build_model
from wmlib.schemes import ipcert as I
from wmlib.schemes.adi import TriggerCycler, TriggerSet
from conftest import template_task

TRAIN, VAL = template_task(500, 0), template_task(300, 1)
_g = torch.Generator().manual_seed(7)
IP = TriggerSet(torch.randint(0, 256, (20, 1, 28, 28), generator=_g, dtype=torch.uint8),
                torch.randint(0, 10, (20,), generator=_g), "random")


def _randomise_statistics(model):
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.3)
            m.weight.data.copy_(torch.randn(m.weight.shape, generator=g))
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g))
    return model.eval()


@pytest.mark.parametrize("name,dataset", [("cifar_cnn", "cifar10"), ("resnet32", "cifar10"),
                                          ("resnet18", "cifar10"), ("lenet5_caffe", "mnist")])
@pytest.mark.parametrize("form", S.FORMS)
def test_folding_keeps_the_outputs_and_leaves_no_float_buffer(name, dataset, form):
    torch.manual_seed(0)
    model = _randomise_statistics(build_model(name, dataset))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(6, *((3, 32, 32) if dataset == "cifar10" else (1, 28, 28)))
    with torch.no_grad():
        want = model(x)
        got = S.fold(model, form)(x)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * want.abs().max()), (got - want).abs().max()
    folded = S.fold(model, form)
    assert not [n for n, b in folded.named_buffers() if b.is_floating_point()]
    extra = sum(p.numel() for p in folded.parameters()) - sum(p.numel() for p in model.parameters())
    stats = sum(b.numel() for n, b in model.named_buffers() if b.is_floating_point())
    if form == "affine":   # each batch norm: γ, β → scale, shift; the normalisation adds 2 per channel
        assert extra == 2 * model.normalize.mean.numel(), extra
    if form.endswith("statistics"):    # every float buffer becomes a parameter
        assert extra == stats, (extra, stats)
    assert S.distance(model, model) == 0.0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())   # the model is untouched


def test_every_working_file_has_finite_coordinates_and_a_broken_one_is_infinitely_far():
    """A running variance in (−ε, 0] still gives PyTorch finite outputs; its coordinate log(v + ε)
    is finite and the folded model computes the same. v + ε < 0 breaks the file (NaN outputs)."""
    model = _randomise_statistics(build_model("cifar_cnn", "cifar10"))
    edited = _randomise_statistics(build_model("cifar_cnn", "cifar10"))
    edited.load_state_dict(model.state_dict())
    bn = edited.features[1]
    bn.running_var[0] = -bn.eps / 2
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(S.fold(edited)(x), edited(x), rtol=1e-4, atol=1e-4)
    assert np.isfinite(S.distance(edited, model))
    bn.running_var[0] = -2 * bn.eps
    assert S.distance(edited, model) == float("inf")


def test_conv_folding_merges_a_batch_norm_into_the_conv_before_it():
    model = _randomise_statistics(build_model("cifar_cnn", "cifar10"))
    convs = [m for m in S.fold(model, "conv").modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 6 and all(c.bias is not None for c in convs)
    # 6 batch norms of 2C parameters each leave; 6 conv biases of C come in; the normalisation adds 6
    assert (sum(p.numel() for p in S.fold(model, "conv").parameters())
            == sum(p.numel() for p in model.parameters()) - sum(c.out_channels for c in convs) + 6)


def test_a_buffer_only_edit_is_a_move_in_the_certified_space():
    """Shifting one running mean by δ moves the certified point by exactly δ, doubling one running
    variance by log 2: the certified distance sees it, the parameter distance (the papers') does
    not. In the affine form the same shift moves by δ·γ/√(v + ε)."""
    model = _randomise_statistics(build_model("cifar_cnn", "cifar10"))
    edited = _randomise_statistics(build_model("cifar_cnn", "cifar10"))
    model.load_state_dict(edited.state_dict())
    bn = edited.features[1]
    bn.running_mean[3] += 0.5
    assert I.l2_distance(edited, model) == 0.0 and S.distance(edited, model, "parameters") == 0.0
    assert S.distance(edited, model) == pytest.approx(0.5, rel=1e-5)
    scale = abs(float(bn.weight[3].detach() / torch.sqrt(bn.running_var[3] + bn.eps)))
    assert S.distance(edited, model, form="affine") == pytest.approx(0.5 * scale, rel=1e-4)
    v = float(bn.running_var[5])
    bn.running_var[5] *= 2                    # the coordinate is log(v + ε)
    step = np.log((2 * v + bn.eps) / (v + bn.eps))
    assert S.distance(edited, model) == pytest.approx((0.5 ** 2 + step ** 2) ** 0.5, rel=1e-5)
    edited.normalize.std[0, 1] *= 2           # the normalisation's buffers count too
    assert S.distance(edited, model) == pytest.approx((0.5 ** 2 + step ** 2 + np.log(2) ** 2) ** 0.5, rel=1e-5)
    with pytest.raises(ValueError, match="space="):
        S.distance(model, model, "buffers")
    with pytest.raises(ValueError, match="form="):
        S.fold(model, "linear")


# ----------------------------------------------------------------------------- soundness against buffer edits
SIGMA, M_CERT, M_CHECK, ALPHA = 0.2, 1000, 500, 0.001


def tiny_bn() -> Classifier:
    torch.manual_seed(0)
    return Classifier(Normalize((0.5,), (0.25,)),
                      nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.BatchNorm1d(64), nn.ReLU()),
                      nn.Linear(64, 10))


@pytest.fixture(scope="module")
def certified():
    """A tiny batch-norm model trained with noise on its IP set, with both certificates' votes."""
    model = tiny_bn()
    T.fit(model, TRAIN, epochs=10, lr=0.05, batch_size=50, schedule="constant", extra=TriggerCycler(IP, 4),
          after_step=I.NoiseTraining(IP, 0.1, draws=4), progress=False)
    model.eval()
    votes = {space: C.noisy_votes(S.folded(model, space), IP.x, IP.y, sigma=SIGMA, m=M_CERT, seed=0)
             for space in S.SPACES}
    return model, votes


def smoothed_mr(model, space, seed=1000):
    v = C.noisy_votes(S.folded(model, space), IP.x, IP.y, sigma=SIGMA, m=M_CHECK, seed=seed)
    return C.matching_rate(v.labels, IP.y.numpy())


def test_buffer_attack_breaks_the_parameter_certificate_not_the_sound_one(certified):
    """Measured: both certificates give CMR(0) = 1 (the sound one 1 / 1 / 0.95 / 0 at R = 0.25 /
    0.5 / 1 / 2σ); the unbounded buffer attack leaves the parameters bit-identical (distance 0),
    keeps validation accuracy 0.88 and drives the IP accuracy to 0.1 and the smoothed MR below
    the parameter-only certificate's promise at R = 0, while its certified distance (24) is far
    beyond the sound certificate's reach. With a radius R the sound certificate holds at R."""
    model, votes = certified
    y = IP.y.numpy()
    cert = {space: C.majority_certificate(v.counts, SIGMA, ALPHA) for space, v in votes.items()}
    assert C.certified_matching_rate(cert["parameters"], y, 0.0) == 1.0
    cmr = lambda R: C.certified_matching_rate(cert["folded"], y, R)   # noqa: E731
    assert cmr(0.0) >= 0.9 and cmr(0.5 * SIGMA) >= 0.5        # the sound certificate is not trivial

    moved, dist = A.buffer_perturbation(model, IP.x, IP.y, VAL, lam=0.2, lr=0.02, steps=200, batch_size=50)
    assert T.accuracy(moved, VAL.x, VAL.y) >= 0.8          # measured 0.88: the stolen model still works
    assert all(torch.equal(a, b) for a, b in zip(moved.parameters(), model.parameters()))
    assert I.l2_distance(moved, model) == 0.0
    mr_params = smoothed_mr(moved, "parameters")
    assert mr_params < C.certified_matching_rate(cert["parameters"], y, 0.0) - 0.5   # promise broken
    assert smoothed_mr(moved, "folded") >= cmr(dist) and cmr(dist) == 0.0

    for radius in (0.25 * SIGMA, 0.5 * SIGMA, SIGMA, 2 * SIGMA):
        bounded, d = A.buffer_perturbation(model, IP.x, IP.y, VAL, radius=radius, lam=1.0, lr=0.05, steps=200,
                                           batch_size=50)
        assert d <= radius * (1 + 1e-4)
        assert smoothed_mr(bounded, "folded") >= cmr(d), radius


def test_folded_pgd_never_breaks_the_sound_certificate(certified):
    """The adaptive PGD (margin loss averaged over noise draws) on every coordinate of the model
    file, at ‖δ‖ ≤ R in the certified space: the smoothed MR stays at or above CMR(R)."""
    model, votes = certified
    y = IP.y.numpy()
    cert = C.majority_certificate(votes["folded"].counts, SIGMA, ALPHA)
    folded = S.fold(model)
    for radius in (0.25 * SIGMA, 0.5 * SIGMA, SIGMA):
        moved, norm = A.worst_case_perturbation(folded, IP.x, IP.y, VAL.x, VAL.y, radius=radius, lr=1.0, iters=30,
                                                val_batch=100, ip_loss="margin", noise_sigma=SIGMA, noise_draws=8)
        assert norm == pytest.approx(radius, abs=1e-4)
        assert smoothed_mr(moved, "folded") >= C.certified_matching_rate(cert, y, radius), radius


def test_buffer_attack_is_cached_and_keyed_by_its_radius(model_cache):
    model = tiny_bn().eval()
    base = T.Trained(model, {"hash": "tiny-bn"})
    a = A.buffer_attack(base, IP, VAL, radius=0.1, steps=5, batch_size=20)
    b = A.buffer_attack(base, IP, VAL, radius=0.1, steps=5, batch_size=20)
    c = A.buffer_attack(base, IP, VAL, radius=None, steps=5, batch_size=20)
    assert not a.record["cache_hit"] and b.record["cache_hit"] and not c.record["cache_hit"]
    assert a.record["folded_distance"] <= 0.1 + 1e-6 and S.distance(b.model, model) == pytest.approx(
        a.record["folded_distance"], rel=1e-5)
    with pytest.raises(ValueError, match="radius="):
        A.buffer_perturbation(model, IP.x, IP.y, VAL, radius=-1.0)
    assert S.distance(c.model, model) == pytest.approx(c.record["folded_distance"], rel=1e-5)
    with pytest.raises(ValueError, match="no batch norm"):
        A.buffer_perturbation(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), IP.x, IP.y, VAL)
    assert np.isfinite(a.record["seconds"])
