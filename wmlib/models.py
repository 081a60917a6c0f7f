"""Model registry by name.

Every model is a :class:`Classifier`: ``normalize`` (the dataset's mean/std, so inputs are
images in [0, 1]), ``features`` and a final linear ``head``. Schemes and attacks rely on that
split: fine-tuning the last layer means training ``head`` only, and the owner's private head can
be plugged back into an attacked model.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .data import dataset_info


class Normalize(nn.Module):
    """Per-channel standardisation, stored as buffers so it travels with the weights."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """``head(features(normalize(x)))``; inputs are float images in [0, 1]."""

    def __init__(self, normalize: nn.Module, features: nn.Module, head: nn.Linear):
        super().__init__()
        self.normalize = normalize
        self.features = features
        self.head = head

    def forward(self, x):
        return self.head(self.features(self.normalize(x)))


# ----------------------------------------------------------------------------- architectures
def _mnist_cnn(c, n, size):
    """Le Merrer et al. 2020 CNN (the Keras MNIST example): conv 32, conv 64 (3x3), dense 128."""
    s = (size - 4) // 2
    feats = nn.Sequential(
        nn.Conv2d(c, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Dropout(0.25), nn.Flatten(), nn.Linear(64 * s * s, 128), nn.ReLU(), nn.Dropout(0.5))
    return feats, nn.Linear(128, n)


def _mlp(c, n, size):
    """Le Merrer et al. 2020 MLP (the Keras example): two hidden layers of 512 with dropout 0.2
    (669,706 parameters on MNIST)."""
    feats = nn.Sequential(nn.Flatten(), nn.Linear(c * size * size, 512), nn.ReLU(), nn.Dropout(0.2),
                          nn.Linear(512, 512), nn.ReLU(), nn.Dropout(0.2))
    return feats, nn.Linear(512, n)


class IRNN(nn.Module):
    """Le et al. 2015 IRNN: one ReLU recurrent layer, recurrent weights initialised to the
    identity, input weights N(0, 0.001²), zero biases; returns the last hidden state.

    ``step`` = number of input values per time step: 1 reads the image pixel by pixel (784 steps
    on MNIST, as Le Merrer et al. 2020), the image width reads it row by row (28 steps)."""

    def __init__(self, inputs: int, step: int, hidden: int = 100):
        super().__init__()
        if inputs % step:
            raise ValueError(f"step={step} must divide the {inputs} input values")
        self.step = step
        self.rnn = nn.RNN(step, hidden, nonlinearity="relu", batch_first=True)
        with torch.no_grad():
            nn.init.normal_(self.rnn.weight_ih_l0, std=0.001)
            self.rnn.weight_hh_l0.copy_(torch.eye(hidden))
            self.rnn.bias_ih_l0.zero_()
            self.rnn.bias_hh_l0.zero_()

    def forward(self, x):
        out, _ = self.rnn(x.reshape(len(x), -1, self.step))
        return out[:, -1]


def _irnn_rows(c, n, size, hidden=100):
    """IRNN reading rows (``size`` steps of c·size values), 100 hidden units as the Keras example:
    the CPU profile's stand-in for the pixel-by-pixel IRNN."""
    return IRNN(c * size * size, c * size, hidden), nn.Linear(hidden, n)


def _irnn_pixels(c, n, size, hidden=100):
    """IRNN reading pixels (c·size² steps of one value), as the paper."""
    return IRNN(c * size * size, 1, hidden), nn.Linear(hidden, n)


def _conv_bn(cin, cout):
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _cifar_cnn(c, n, size):
    """Small fast CNN for the CPU profile: three stages of two 3x3 conv-BN-ReLU (32/64/128), 0.29 M."""
    layers = []
    cin = c
    for width in (32, 64, 128):
        layers += _conv_bn(cin, width) + _conv_bn(width, width) + [nn.MaxPool2d(2)]
        cin = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers), nn.Linear(128, n)


class PreActBlock(nn.Module):
    """Pre-activation basic block (He et al. 2016), as in the Adi et al. code."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        out = torch.relu(self.bn1(x))
        short = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + short


def _preact_resnet18(c, n, size, base: int = 64):
    """Pre-activation ResNet-18 of the Adi et al. code: 3x3 stem, widths ``base`` × 1, 2, 4, 8
    (64-512), 4x4 avg pool."""
    layers = [nn.Conv2d(c, base, 3, 1, 1, bias=False)]
    cin = base
    for width, stride in ((base, 1), (2 * base, 2), (4 * base, 2), (8 * base, 2)):
        layers += [PreActBlock(cin, width, stride), PreActBlock(width, width, 1)]
        cin = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]   # as the authors' code: no final BN-ReLU
    return nn.Sequential(*layers), nn.Linear(8 * base, n)


def _lenet5_caffe(c, n, size):
    """LeNet-5, Caffe variant (Tartaglione et al. 2020, the authors' code): conv 20 5x5, max-pool,
    conv 50 5x5, max-pool, fc 500, fc 10 (431,080 parameters on MNIST); weights N(0, 0.01²) as
    in that code, biases PyTorch's default."""
    s = ((size - 4) // 2 - 4) // 2
    feats = nn.Sequential(
        nn.Conv2d(c, 20, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(50 * s * s, 500), nn.ReLU())
    head = nn.Linear(500, n)
    with torch.no_grad():
        for m in [*feats, head]:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.normal_(0.0, 0.01)
    return feats, head


class BasicBlockA(nn.Module):
    """CIFAR ResNet basic block (He et al. 2016, §4.2) with the option-A shortcut: identity, or
    2x subsampling plus zero-padded channels when the shape changes (no parameters)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.pad = stride, cout - cin

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x[:, :, ::self.stride, ::self.stride] if self.stride != 1 else x
        if self.pad:
            short = nn.functional.pad(short, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return torch.relu(out + short)


def _resnet32(c, n, size, base=16):
    """CIFAR ResNet-32 (He et al. 2016; Tartaglione et al.'s code): 3x3 conv 16, three stages of
    five option-A basic blocks (16/32/64 channels), global average pool (464,154 parameters).
    ``base``: the first stage's width (16; the others twice and four times it)."""
    layers = [nn.Conv2d(c, base, 3, 1, 1, bias=False), nn.BatchNorm2d(base), nn.ReLU(inplace=True)]
    cin = base
    for width, stride in ((base, 1), (2 * base, 2), (4 * base, 2)):
        for i in range(5):
            layers.append(BasicBlockA(cin, width, stride if i == 0 else 1))
            cin = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers), nn.Linear(4 * base, n)


def _allcnn_c(c, n, size, base=96):
    """ALL-CNN-C (Springenberg et al. 2015; Tartaglione et al.'s code, with its Dropout2d 0.2 on
    the input and 0.5 after each stride-2 conv): 3x3 convs 96-96-96/2-192-192-192/2, 3x3 valid
    conv 192, 1x1 conv 192, global average pool, then the 10-way 1x1 conv as a linear ``head``
    (the same 1,930 parameters; averaging and a linear map commute, but the code's ReLU after that
    last conv is dropped so that the head is linear). 1,369,738 parameters on CIFAR-10.
    ``base``: the first three convolutions' width (96; the others twice it)."""
    def conv(cin, cout, k=3, stride=1, pad=1):
        return [nn.Conv2d(cin, cout, k, stride, pad), nn.ReLU(inplace=True)]

    a, b = base, 2 * base
    layers = ([nn.Dropout2d(0.2)] + conv(c, a) + conv(a, a) + conv(a, a, stride=2)
              + [nn.Dropout2d(0.5)] + conv(a, b) + conv(b, b) + conv(b, b, stride=2)
              + [nn.Dropout2d(0.5)] + conv(b, b, pad=0) + conv(b, b, k=1, pad=0)
              + [nn.AdaptiveAvgPool2d(1), nn.Flatten()])
    return nn.Sequential(*layers), nn.Linear(b, n)


MODELS: dict[str, Callable] = {
    "mnist_cnn": _mnist_cnn,
    "mlp": _mlp,
    "irnn_rows": _irnn_rows,
    "irnn_pixels": _irnn_pixels,
    # 427 hidden units: 199,419 parameters reading rows, the paper's IRNN size (199,434)
    "irnn_rows_427": lambda c, n, size: _irnn_rows(c, n, size, 427),
    "cifar_cnn": _cifar_cnn,
    "resnet18": _preact_resnet18,
    "resnet18_narrow": lambda c, n, size: _preact_resnet18(c, n, size, base=8),
    "lenet5_caffe": _lenet5_caffe,
    "resnet32": _resnet32,
    "resnet32_narrow": lambda c, n, size: _resnet32(c, n, size, base=2),
    "allcnn_c": _allcnn_c,
    "allcnn_c_narrow": lambda c, n, size: _allcnn_c(c, n, size, base=12),
}


NARROW = {"resnet18": "resnet18_narrow", "resnet32": "resnet32_narrow", "allcnn_c": "allcnn_c_narrow"}
"""What a tiny run of a profile trains instead of a model (``Settings.tiny()``): the same layers
and blocks at 1/8 of the width, so that every step of the paper profile runs in seconds on a CPU
(ResNet-18 costs about 0.1 s per training image there; at 1/8 width, 64 times fewer operations)."""


def narrow(name: str) -> str:
    """The model a tiny run trains in place of ``name`` (:data:`NARROW`; itself when none)."""
    return NARROW.get(name, name)


def build_model(name: str, dataset: str, num_classes: int | None = None) -> Classifier:
    """A freshly initialised model ``name`` shaped for ``dataset`` (input size, classes, stats)."""
    if name not in MODELS:
        raise ValueError(f"model={name!r} is not known; accepted values: {sorted(MODELS)}")
    info = dataset_info(dataset)
    feats, head = MODELS[name](info.channels, num_classes or info.classes, info.size)
    return Classifier(Normalize(info.mean, info.std), feats, head)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def memory_format(model: nn.Module) -> torch.memory_format | None:
    """How training lays tensors out: channels-last for a convolutional network, else the default."""
    return torch.channels_last if any(isinstance(m, nn.Conv2d) for m in model.modules()) else None


def laid_out(x: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """Images ``x`` in the layout training gives ``model``'s input (:func:`memory_format`): channels-last
    convolutions run 1.2-1.6x faster on a 2-core AVX-512 CPU (measured), for training and inference alike."""
    fmt = memory_format(model)
    return x.contiguous(memory_format=fmt) if fmt is not None and x.ndim == 4 else x
