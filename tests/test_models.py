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
