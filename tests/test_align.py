"""Alignment (wmlib.align): it undoes every zero-cost edit exactly, and it cannot create or destroy
a function (the aligned model computes what the suspect computed), which keeps certificates sound."""
import copy

import pytest
import torch

from wmlib import attacks, certspace, units
from wmlib.align import align
from wmlib.models import build_model
from wmlib.train import Trained

from test_zero_cost import BATCHNORM, CNNS, DUMMIES, REL, logits, owner

TOL = 1e-5
"""Largest error of a recovered tensor relative to its largest value (observed: 9e-8 to 9e-7)."""


def recovered(aligned: torch.nn.Module, base: torch.nn.Module) -> float:
    """The largest error of any tensor of ``aligned`` against ``base``, relative to that tensor's scale."""
    sa, sb = aligned.state_dict(), base.state_dict()
    assert sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape for k in sa)
    return max(float((sa[k].double() - sb[k].double()).abs().max() / sb[k].double().abs().max().clamp_min(1e-12))
               for k in sa if sa[k].is_floating_point())


def probe(model, n=4):
    return torch.rand(n, *units.input_shape(model), generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("name", CNNS)
def test_a_permutation_is_undone(name):
    base = owner(name)
    suspect = attacks.permute_units(base, seed=1).model
    assert recovered(suspect, base.model) > 0.1
    aligned, report = align(suspect, base.model)
    assert recovered(aligned, base.model) < TOL
    assert report.distance < 1e-4 < certspace.distance(suspect, base.model)
    assert sum(g.moved for g in report.groups) > 0.9 * sum(g.units for g in report.groups)


@pytest.mark.parametrize("name", [n for n in CNNS if n != "resnet18"])
def test_positive_scales_are_undone(name):
    base = owner(name)
    aligned, _ = align(attacks.scale_units(base, seed=1, low=0.25, high=4.0).model, base.model)
    assert recovered(aligned, base.model) < TOL


@pytest.mark.parametrize("name", BATCHNORM)
def test_batchnorm_rescaling_is_undone(name):
    base = owner(name)
    suspect = attacks.rescale_batchnorm(base, None, seed=2).model
    aligned, report = align(suspect, base.model, method="activations", probe=probe(base.model, 2))
    assert recovered(aligned, base.model) < TOL
    assert {g.method for g in report.groups} == {"activations"}


@pytest.mark.parametrize("name", DUMMIES)
@pytest.mark.parametrize("kind", attacks.DUMMY_KINDS)
def test_dummy_units_are_removed(name, kind):
    base = owner(name)
    suspect = attacks.add_dummy_units(base, kind, count=3, seed=4).model
    aligned, report = align(suspect, base.model)
    assert recovered(aligned, base.model) < TOL
    for g in report.groups:
        assert g.suspect_units == g.units + 3 and g.merged + g.dropped == 3
        assert g.merged == {"zero": g.merged, "clique": 2, "split": 3}[kind]   # a clique of 3: 2 merges, 1 drop


@pytest.mark.parametrize("name", DUMMIES)
@pytest.mark.parametrize("method", ["weights", "activations"])
def test_the_whole_composition_is_undone(name, method):
    base = owner(name)
    suspect = attacks.zero_cost_edit(base, seed=3).model
    aligned, report = align(suspect, base.model, method=method, probe=probe(base.model))
    assert recovered(aligned, base.model) < TOL
    assert report.max_logit_change <= REL * report.logit_scale


def test_residual_streams_are_undone_from_the_composition():
    base = owner("resnet32")
    aligned, _ = align(attacks.zero_cost_edit(base, seed=3, dummies=()).model, base.model)
    assert recovered(aligned, base.model) < TOL


@pytest.mark.parametrize("name", ["mlp", "mnist_cnn", "cifar_cnn", "resnet32"])
@pytest.mark.parametrize("method", ["weights", "both"])
def test_an_independent_model_keeps_its_own_function(name, method):
    base, other = owner(name), owner(name, seed=7)
    suspect = other.model if name == "resnet32" else attacks.zero_cost_edit(other, seed=1).model
    aligned, report = align(suspect, base.model, method=method, probe=probe(base.model))
    own, after = logits(other.model), logits(aligned)
    assert (after - own).abs().max() <= REL * own.abs().max()            # no function created or destroyed
    assert recovered(aligned, base.model) > 0.1                           # and it is not the owner's
    assert report.distance > 1.0
    assert all(g.units == g.suspect_units - (0 if name == "resnet32" else 6) for g in report.groups)


def test_a_different_architecture_is_refused():
    base = owner("mnist_cnn")
    with pytest.raises(ValueError, match="not a zero-cost transform"):
        align(owner("lenet5_caffe").model, base.model)
    with pytest.raises(ValueError, match="head.weight has shape"):
        align(build_model("mnist_cnn", "mnist", num_classes=12), base.model)
    with pytest.raises(ValueError, match="RNN"):
        align(owner("irnn_rows").model, owner("irnn_rows").model)


def test_a_file_without_unit_scales_is_refused_by_name():
    """Non-finite values are refused on entry; a finite but degenerate file (a batch norm's running
    variance below −ε: no real scale 1/√(v + ε)) gets one clear error naming the tensor."""
    base = owner("cifar_cnn")
    broken = copy.deepcopy(base.model)
    with torch.no_grad():
        broken.features[1].running_var[0] = -1.0
    with pytest.raises(ValueError, match="features.1.running_var have no finite positive scale"):
        align(broken, base.model)
    broken.features[1].running_var[0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        align(broken, base.model)


def test_real_extra_units_are_not_dummies():
    base = owner("mlp")
    wider = attacks.add_dummy_units(base, "split", count=2, seed=0).model
    with torch.no_grad():                      # the copies now compute something else: not removable
        wider.features[1].weight.add_(1e-2 * torch.randn(wider.features[1].weight.shape,
                                                         generator=torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="keeps 514 of its 514 units"):
        align(wider, base.model)


def test_bad_settings_name_the_parameter():
    base = owner("mlp").model
    with pytest.raises(ValueError, match="method='greedy'"):
        align(base, base, method="greedy")
    with pytest.raises(ValueError, match="probe"):
        align(base, base, method="activations")


def test_alignment_leaves_its_inputs_alone():
    base = owner("cifar_cnn")
    suspect = attacks.zero_cost_edit(base, seed=0)
    before = {k: v.clone() for k, v in suspect.model.state_dict().items()}
    aligned, _ = align(suspect.model, base.model)
    assert all(torch.equal(v, suspect.model.state_dict()[k]) for k, v in before.items())
    assert aligned is not base.model and isinstance(aligned, type(base.model))
    assert Trained(aligned).model.head.in_features == 128


def test_what_is_remembered_of_an_owner_follows_its_contents_not_the_object():
    """The owner's side of alignment is reused per owner file: an edit in place through ``.data``
    (which no version counter sees) must not be aligned to with the old file's side."""
    from wmlib.align import file_stamp
    base = owner("cifar_cnn")
    mine = attacks.permute_units(base, seed=3)                 # an owner file of our own, edited below
    ref = mine.model
    suspect = attacks.permute_units(mine, seed=1).model
    first, _ = align(suspect, ref)
    assert recovered(first, ref) < TOL
    stamp = file_stamp(ref)
    moved = attacks.permute_units(base, seed=7).model
    for p, q in zip(ref.parameters(), moved.parameters()):
        p.data.copy_(q.data)                                 # same object, new contents
    for b, c in zip(ref.buffers(), moved.buffers()):
        b.data.copy_(c.data)
    assert file_stamp(ref) != stamp
    again, _ = align(suspect, ref)
    assert recovered(again, ref) < TOL and recovered(again, first) > 0.1
