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
