"""Zero-cost edits (wmlib.units, the attacks permute_units / scale_units / rescale_batchnorm /
add_dummy_units / zero_cost_edit): the outputs stay to float rounding, the file moves."""
import pytest
import torch
from torch import nn

from wmlib import attacks, certspace, units
from wmlib.models import build_model
from wmlib.train import Trained

CNNS = ("mlp", "mnist_cnn", "lenet5_caffe", "cifar_cnn", "allcnn_c", "resnet32", "resnet18")
BATCHNORM = ("cifar_cnn", "resnet32", "resnet18")
DUMMIES = ("mlp", "mnist_cnn", "lenet5_caffe", "cifar_cnn")
REL = 1e-5
"""Largest logit change allowed, relative to the largest logit (observed: 3e-9 to 6e-7)."""


def owner(name: str, seed: int = 0) -> Trained:
    """A freshly built registry model in eval mode, its batch norms given non-trivial statistics
    and affine parameters (so that rescaling them matters)."""
    torch.manual_seed(seed)
    model = build_model(name, "mnist" if name in ("mlp", "mnist_cnn", "lenet5_caffe") or name.startswith("irnn")
                        else "cifar10").eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0, 0.2, generator=g)
    return Trained(model, {"hash": f"{name}-{seed}"})


def logits(model: nn.Module, n: int = 4, seed: int = 11) -> torch.Tensor:
    x = torch.rand(n, *units.input_shape(model), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model.eval()(x)


def assert_same_function(a: nn.Module, b: nn.Module):
    la, lb = logits(a), logits(b)
    assert (la - lb).abs().max() <= REL * lb.abs().max()


def changed(a: nn.Module, b: nn.Module) -> set[str]:
    sa, sb = a.state_dict(), b.state_dict()
    return {k for k in sa if sa[k].shape != sb[k].shape or not torch.equal(sa[k], sb[k])}


# ----------------------------------------------------------------------------- the units
def test_mnist_cnn_units_follow_the_channels_through_the_flatten():
    groups = units.describe(owner("mnist_cnn").model)
    assert [g.size for g in groups] == [32, 64, 128]
    flat = [e for e in groups[1].entries if e.module == "features.7" and e.role == "in"]
    assert len(flat) == 1 and flat[0].block == 12 * 12          # each of conv 2's channels owns 144 columns
    names = {e.name for g in groups for e in g.entries}
    assert "head.bias" not in names and not any(e.module == "features.0" and e.axis == 1
                                                for g in groups for e in g.entries)
    assert [s.kind for g in groups for s in g.sites] == ["relu"] * 3


def test_a_residual_stream_is_one_group_over_its_blocks():
    groups = {g.name: g for g in units.describe(owner("resnet18").model)}
    stream = groups["features.0"]                # stem conv, blocks 1-2 of stage 1, the stage-2 block that reads it
    modules = {e.module for e in stream.entries}
    assert {"features.0", "features.1.conv2", "features.2.conv2", "features.1.bn1", "features.3.bn1",
            "features.3.shortcut"} <= modules
    assert stream.size == 64 and stream.whole
    assert {s.kind for s in stream.sites} == {"batchnorm", "relu"}
    assert len(groups) == 12                     # 4 streams, 8 blocks' inner units


def test_resnet32_option_a_shortcut_ties_a_stream_to_the_middle_of_the_next():
    first = units.describe(owner("resnet32").model)[0]
    assert first.size == 16 and not first.whole
    stage2 = next(e for e in first.entries if e.module == "features.8.bn2" and e.tensor == "weight")
    stage3 = next(e for e in first.entries if e.module == "features.13.bn2" and e.tensor == "weight")
    assert stage2.positions == tuple(range(8, 24)) and stage3.positions == tuple(range(24, 40))


@pytest.mark.parametrize("name", ["irnn_rows", "irnn_pixels"])
def test_recurrent_models_are_not_described(name):
    with pytest.raises(ValueError, match=r"features\.rnn \(RNN, inside IRNN"):
        units.describe(owner(name).model)
    with pytest.raises(ValueError, match="RNN"):
        attacks.permute_units(owner(name))


# ----------------------------------------------------------------------------- the transforms
@pytest.mark.parametrize("name", CNNS)
def test_permutation_keeps_outputs_and_moves_every_weight(name):
    base = owner(name)
    out = attacks.permute_units(base, seed=3)
    assert_same_function(out.model, base.model)
    assert out.record["max_logit_change"] <= REL * out.record["logit_scale"]
    assert out.record["folded_distance"] > 1.0
    assert certspace.distance(out.model, base.model) == pytest.approx(out.record["folded_distance"])
    moved = changed(out.model, base.model)
    hidden = {k for k in base.model.state_dict() if k.startswith("features.") and not k.endswith("num_batches_tracked")}
    assert hidden <= moved and "head.bias" not in moved
    again = attacks.permute_units(base, seed=3)
    assert not changed(again.model, out.model) and again.hash == out.hash
    assert changed(attacks.permute_units(base, seed=4).model, out.model)


@pytest.mark.parametrize("name", CNNS)
def test_positive_scaling_across_relus_keeps_outputs(name):
    base = owner(name)
    out = attacks.scale_units(base, seed=1, low=0.25, high=4.0)
    assert_same_function(out.model, base.model)
    assert out.record["folded_distance"] > 1.0
    group = units.describe(base.model)[0]
    site = next(s for s in group.sites if s.kind == "relu")
    scaled = {group.entries[i].name for i in site.out + site.into}
    assert scaled <= changed(out.model, base.model)            # a ReLU layer's rows (or a BN's affine) and its reader


@pytest.mark.parametrize("name", BATCHNORM)
def test_batchnorm_rescaling_keeps_outputs_and_blows_up_the_certified_distance(name):
    base = owner(name)
    out = attacks.rescale_batchnorm(base, 0.1)
    assert_same_function(out.model, base.model)
    conv, bn = ("features.0", "features.1") if name != "resnet18" else ("features.1.conv1", "features.1.bn2")
    sa, sb = out.model.state_dict(), base.model.state_dict()
    torch.testing.assert_close(sa[f"{conv}.weight"], 0.1 * sb[f"{conv}.weight"])
    torch.testing.assert_close(sa[f"{bn}.running_mean"], 0.1 * sb[f"{bn}.running_mean"])
    torch.testing.assert_close(sa[f"{bn}.running_var"], 0.01 * (sb[f"{bn}.running_var"] + 1e-5) - 1e-5)
    assert out.record["folded_distance"] > 10
    random = attacks.rescale_batchnorm(base, None, seed=2)
    assert_same_function(random.model, base.model)


@pytest.mark.parametrize("name", DUMMIES)
@pytest.mark.parametrize("kind", attacks.DUMMY_KINDS)
def test_dummy_units_widen_the_layers_and_keep_outputs(name, kind):
    base = owner(name)
    out = attacks.add_dummy_units(base, kind, count=3, seed=5)
    assert_same_function(out.model, base.model)
    before, after = units.describe(base.model), units.describe(out.model)
    assert [g.size + 3 for g in before] == [g.size for g in after]
    assert out.record["folded_distance"] is None                 # no longer the owner's shapes
    first = after[0].entries[0]
    assert units.tensor(out.model, first).shape[0] == before[0].size + 3
    assert out.model.head.in_features == base.model.head.in_features + 3     # a rebuilt, wider layer


def test_dummy_kinds_are_what_they_say():
    base = owner("mlp")
    zero = attacks.add_dummy_units(base, "zero", count=4, seed=0).model
    w1, w2 = zero.features[1].weight, zero.features[4].weight
    reads_nothing = (w1.abs().sum(1) == 0) & (zero.features[1].bias == 0)
    read_by_nothing = w2.abs().sum(0) == 0
    assert int((reads_nothing | read_by_nothing).sum()) == 4
    split = attacks.add_dummy_units(base, "split", count=2, seed=0).model
    rows = torch.cat([split.features[1].weight, split.features[1].bias[:, None]], 1)
    assert len(rows) - len(torch.unique(rows, dim=0)) == 2      # two units copied exactly


@pytest.mark.parametrize("name", ["mnist_cnn", "cifar_cnn"])
def test_the_composition_keeps_outputs(name):
    base = owner(name)
    out = attacks.zero_cost_edit(base, seed=2)
    assert_same_function(out.model, base.model)
    assert len(out.record["steps"]) == 3 + 1 + (1 if name == "cifar_cnn" else 0) + 1
    assert out.record["max_logit_change"] <= REL * out.record["logit_scale"]
    bare = attacks.zero_cost_edit(base, seed=2, dummies=())
    assert bare.record["folded_distance"] > 1.0


def test_bad_settings_name_the_parameter():
    base = owner("mlp")
    with pytest.raises(ValueError, match="kind='ghost'.*zero"):
        attacks.add_dummy_units(base, "ghost")
    with pytest.raises(ValueError, match="count=1"):
        attacks.add_dummy_units(base, "clique", count=1)
    with pytest.raises(ValueError, match="count=600"):
        attacks.add_dummy_units(base, "split", count=600)
    with pytest.raises(ValueError, match="batch norm"):
        attacks.rescale_batchnorm(base, 0.5)
    with pytest.raises(ValueError, match="factor=0"):
        attacks.rescale_batchnorm(owner("cifar_cnn"), 0)
    with pytest.raises(ValueError, match="factor=-2"):
        attacks.rescale_batchnorm(owner("cifar_cnn"), -2)
    with pytest.raises(ValueError, match="low=0"):
        attacks.scale_units(base, low=0, high=2)
    with pytest.raises(ValueError, match="dummies="):
        attacks.zero_cost_edit(base, dummies=("zero", "ghost"))


def test_the_base_model_is_not_edited_in_place():
    base = owner("cifar_cnn")
    before = {k: v.clone() for k, v in base.model.state_dict().items()}
    attacks.zero_cost_edit(base, seed=1)
    assert all(torch.equal(v, base.model.state_dict()[k]) for k, v in before.items())
