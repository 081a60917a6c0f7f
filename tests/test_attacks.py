import copy

import pytest
import torch

from wmlib import attacks
from torch import nn

from wmlib.models import Classifier, Normalize, build_model
from wmlib.train import Trained, accuracy
from conftest import random_data


@pytest.fixture
def base(model_cache):
    torch.manual_seed(0)
    return Trained(build_model("cifar_cnn", "cifar10").eval(), {"hash": "base-for-tests"})


def _changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


@pytest.mark.parametrize("variant", attacks.FINE_TUNING)
def test_fine_tuning_touches_exactly_its_parameters(base, variant):
    before = copy.deepcopy(base.model.state_dict())
    out = attacks.fine_tune(base, variant, random_data("cifar10", 64), epochs=1, lr=0.05,
                            batch_size=16, progress=False)
    changed = _changed(before, out.model.state_dict())
    head = {"head.weight", "head.bias"}
    body = set(before) - head
    assert head <= changed
    if variant.endswith("LL"):     # last layer only: weights and batch-norm statistics untouched
        assert not changed & body
    else:                          # all layers: every conv/BN weight and statistic moved
        moved = {k for k in body if not k.endswith("num_batches_tracked")
                 and not k.startswith("normalize.")}
        assert moved <= changed
    # the base model is not modified in place
    assert not _changed(before, base.model.state_dict())


def test_re_initialisation_is_seeded_and_owner_head_plugs_back(base):
    data = random_data("cifar10", 32)
    a = attacks.fine_tune(base, "RTLL", data, epochs=1, lr=0.0, progress=False, seed=3)
    b = attacks.fine_tune(base, "RTLL", data, epochs=1, lr=0.0, progress=False, seed=4)
    assert not torch.equal(a.model.head.weight, base.model.head.weight)
    assert not torch.equal(a.model.head.weight, b.model.head.weight)
    restored = attacks.with_head(a.model, base.model.head)
    x = random_data("cifar10", 50, seed=9).x
    with torch.no_grad():
        owner_labels = base.model(x.float() / 255).argmax(1)
    assert accuracy(restored, x, owner_labels) == 1.0
    assert a.model.head is not restored.head


def test_attacks_are_cached(base):
    data = random_data("cifar10", 32)
    first = attacks.fine_tune(base, "FTAL", data, epochs=1, lr=0.01, progress=False)
    second = attacks.fine_tune(base, "FTAL", data, epochs=1, lr=0.01, progress=False)
    assert not first.record["cache_hit"] and second.record["cache_hit"]
    assert all(torch.equal(v, second.model.state_dict()[k]) for k, v in first.model.state_dict().items())


def test_transfer_swaps_the_head(base):
    out = attacks.transfer(base, random_data("cifar100", 32), classes=100, epochs=1, lr=0.01,
                           progress=False)
    assert out.model.head.out_features == 100
    again = attacks.transfer(base, random_data("cifar100", 32), classes=100, epochs=1, lr=0.01,
                             progress=False)
    assert again.record["cache_hit"] and again.model.head.out_features == 100


def test_unknown_variant():
    with pytest.raises(ValueError, match="variant=.*FTLL"):
        attacks.fine_tune(None, "FTXX", None, epochs=1, lr=0.1)


@pytest.mark.parametrize("rate", [0.25, 0.5, 0.85])
def test_pruning_zeroes_exactly_the_asked_fraction_of_the_smallest_weights(rate):
    torch.manual_seed(0)
    model = build_model("mnist_cnn", "mnist")
    pruned = attacks.prune(Trained(model, {"hash": "m"}), rate).model
    before = torch.cat([w.flatten() for w in attacks._weights(model)])
    after = torch.cat([w.flatten() for w in attacks._weights(pruned)])
    zeroed = after == 0
    assert int(zeroed.sum()) == round(rate * before.numel())
    assert before[zeroed].abs().max() <= before[~zeroed].abs().min()      # the smallest ones
    assert torch.equal(after[~zeroed], before[~zeroed])                   # the rest untouched
    assert torch.equal(pruned.head.bias, model.head.bias)                 # biases are not pruned
    assert not (torch.cat([w.flatten() for w in attacks._weights(model)]) == 0).any()  # copy


def test_svd_reconstruction_error_shrinks_with_rank():
    torch.manual_seed(0)
    model = build_model("mlp", "mnist")
    errors = []
    for rate in (0.9, 0.75, 0.5, 0.25, 0.0):
        comp = attacks.svd_compress(Trained(model, {"hash": "m"}), rate).model
        errors.append(sum(float((a - b).detach().norm()) for a, b in
                          zip(attacks._weights(model), attacks._weights(comp))))
    assert all(a > b for a, b in zip(errors, errors[1:]))
    assert errors[-1] < 1e-3                                              # full rank: exact
    w = attacks._weights(attacks.svd_compress(Trained(model, {"hash": "m"}), 0.75).model)[1]            # 512 x 512 -> rank 128
    assert int(torch.linalg.matrix_rank(w)) == 128
    with pytest.raises(ValueError, match="rate="):
        attacks.svd_compress(Trained(model, {"hash": "m"}), 1.0)


def test_pruning_reaches_recurrent_weights():
    torch.manual_seed(0)
    model = build_model("irnn_rows", "mnist")
    names = [w.shape for w in attacks._weights(model)]
    assert (100, 28) in names and (100, 100) in names and (10, 100) in names
    pruned = attacks.prune(Trained(model, {"hash": "m"}), 0.5).model
    total = sum(w.numel() for w in attacks._weights(model))
    zeroed = sum(int((w == 0).sum()) for w in attacks._weights(pruned))
    before = sum(int((w == 0).sum()) for w in attacks._weights(model))   # identity's off-diagonal
    assert zeroed == max(before, round(0.5 * total))
    assert torch.equal(torch.diagonal(pruned.features.rnn.weight_hh_l0), torch.ones(100))  # |1| kept


def test_distillation_labels_and_adam(model_cache):
    """Hard labels, logits (MSE) and soft labels (KL) are three cached attacks; at the teacher's own
    weights the logit MSE is exactly 0 (an MLP without dropout or batch norm), so a student that
    starts there does not move under it even with Adam, while hard labels (cross-entropy on the
    argmax, not 0) move it (the KL's gradient p_s − p_t is 0 up to rounding, which Adam's
    normalised steps amplify: not asserted)."""
    torch.manual_seed(0)
    net = Classifier(Normalize((0.5,) * 3, (0.25,) * 3), nn.Sequential(nn.Flatten(), nn.Linear(3072, 32), nn.ReLU()),
                     nn.Linear(32, 10))
    base = Trained(net.eval(), {"hash": "mlp-for-tests"})
    data = random_data("cifar10", 32)
    kw = dict(epochs=1, lr=1e-3, batch_size=16, weight_decay=0.0, optimizer="adam", progress=False)
    out = {lab: attacks.distill(base, data, labels=lab, **kw) for lab in attacks.DISTILL_LABELS}
    assert len({o.hash for o in out.values()}) == 3
    dist = {lab: sum(((a - b) ** 2).sum() for a, b in zip(o.model.parameters(), base.model.parameters())).item()
            for lab, o in out.items()}
    assert dist["logits"] == 0.0 and dist["hard"] > 1e-3, dist
    # the default (soft, SGD) keeps its cache key: no optimizer/labels entries
    plain = attacks.distill(base, data, epochs=1, lr=0.01, batch_size=16, progress=False)
    assert "labels" not in plain.record["key"] and "optimizer" not in plain.record["key"]
    with pytest.raises(ValueError, match="labels="):
        attacks.distill(base, data, labels="argmax", **kw)


def test_pgd_skips_steps_whose_gradient_is_not_finite(base):
    """Noise so large that every noisy copy overflows: no step is finite, δ stays 0 (not NaN)."""
    d = random_data("cifar10", 8)
    moved, norm = attacks.worst_case_perturbation(base.model, d.x, d.y, d.x, d.y, radius=1.0, iters=3, lr=0.1,
                                                  noise_sigma=1e30, noise_draws=1, ip_loss="margin")
    assert norm == 0.0
    assert all(torch.equal(a, b) for a, b in zip(moved.parameters(), base.model.parameters()))


def test_overwriting_embeds_the_attackers_own_mark_of_either_kind(model_cache):
    """``overwrite_own`` knows no scheme: the attacker's own trigger set mixed into every batch is learned,
    a payload in the weights is written and kept; each is cached under what was embedded; anything else is
    refused with the parameter's name."""
    from conftest import template_task
    from wmlib.schemes import adi, weights
    torch.manual_seed(0)
    stolen = Trained(build_model("mnist_cnn", "mnist").eval(), {"hash": "stolen-for-overwriting"})
    data = template_task(400, seed=1)
    own = adi.procedural_trigger("mnist", n=10, seed=1000)
    before = adi.count_matches(stolen.model, own)
    out = attacks.overwrite_own(stolen, data, adi.TriggerCycler(own, 10), epochs=8, lr=0.05)
    assert adi.count_matches(out.model, own) >= 8 > before            # the attacker's ten labels, learned
    assert attacks.overwrite_own(stolen, data, adi.TriggerCycler(own, 10), epochs=8, lr=0.05).record["cache_hit"]
    key = weights.make_key(stolen.model, n=50, seed=1000)
    payload = weights.Payload(key, weights.payload(50, seed=1000))
    marked = attacks.overwrite_own(stolen, data, payload, epochs=1, lr=0.01)
    assert weights.correlation(marked.model, key, payload.values)[0] > 0.99
    assert weights.correlation(stolen.model, key, payload.values)[0] < 0.5
    with pytest.raises(ValueError, match="own="):
        attacks.overwrite_own(stolen, data, own, epochs=1, lr=0.01)      # a trigger set alone: not a source of batches
