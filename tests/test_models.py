import pytest
import torch

from wmlib.models import MODELS, build_model, count_parameters


def test_le_merrer_mlp_parameter_count():
    # Le Merrer et al. 2020: the MLP has 669,706 parameters
    assert count_parameters(build_model("mlp", "mnist")) == 669_706


@pytest.mark.parametrize("name,dataset,params", [("mnist_cnn", "mnist", 1_199_882),
                                                 ("cifar_cnn", "cifar10", 288_746),
                                                 ("resnet18", "cifar10", 11_171_146)])
def test_shapes_and_sizes(name, dataset, params):
    m = build_model(name, dataset).eval()
    size, c = (28, 1) if dataset == "mnist" else (32, 3)
    assert m(torch.rand(2, c, size, size)).shape == (2, 10)
    assert count_parameters(m) == params


def test_classes_follow_dataset():
    assert build_model("resnet18", "cifar100").head.out_features == 100


def test_unknown_model_names_accepted_values():
    with pytest.raises(ValueError, match="accepted values") as err:
        build_model("vgg99", "mnist")
    assert all(name in str(err.value) for name in MODELS)


@pytest.mark.parametrize("name,params", [("irnn_rows", 14_010), ("irnn_pixels", 11_310),
                                         ("irnn_rows_427", 199_419)])
def test_irnn_sizes_and_identity_initialisation(name, params):
    # Le et al. 2015: h_t = relu(W_ih x_t + W_hh h_{t-1}), W_hh = I at initialisation
    m = build_model(name, "mnist").eval()
    assert count_parameters(m) == params          # paper: 199,434 (rows_427 comes within 15)
    rnn = m.features.rnn
    assert torch.equal(rnn.weight_hh_l0, torch.eye(rnn.hidden_size))
    assert float(rnn.weight_ih_l0.detach().std()) == pytest.approx(0.001, rel=0.2)
    assert m(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_irnn_rows_reads_28_steps_of_a_row():
    m = build_model("irnn_rows", "mnist").eval()
    x = torch.rand(2, 1, 28, 28)
    out, _ = m.features.rnn(m.normalize(x)[:, 0])  # (batch, 28 rows as steps, 28 pixels)
    assert out.shape[1] == 28
    assert torch.allclose(m.features(m.normalize(x)), out[:, -1])


@pytest.mark.parametrize("name, convs, head", [("resnet18", 20, 64), ("resnet32", 31, 8), ("allcnn_c", 8, 24)])
def test_narrow_models_have_the_same_layers_at_an_eighth_of_the_width(name, convs, head):
    """What tiny runs of the paper profile train (wmlib.models.NARROW): every layer of the model,
    each convolution with 1/8 of the channels (the input's excepted), the same kernels and strides."""
    from torch import nn
    from wmlib.models import narrow
    full, thin = build_model(name, "cifar10"), build_model(narrow(name), "cifar10")
    assert narrow(name) == f"{name}_narrow" and narrow("lenet5_caffe") == "lenet5_caffe"
    assert [type(m) for m in full.modules()] == [type(m) for m in thin.modules()]
    pairs = [(a, b) for a, b in zip(full.modules(), thin.modules()) if isinstance(a, nn.Conv2d)]
    assert len(pairs) == convs
    for a, b in pairs:
        assert (a.kernel_size, a.stride, a.padding) == (b.kernel_size, b.stride, b.padding)
        assert a.out_channels == 8 * b.out_channels
        assert a.in_channels == (3 if a.in_channels == 3 else 8 * b.in_channels)
    assert thin.head.in_features == head and thin(torch.rand(2, 3, 32, 32)).shape == (2, 10)
