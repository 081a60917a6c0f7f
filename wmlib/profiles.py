"""Profiles: smoke (seconds, for CI), cpu (a 2-core CPU, still the paper's qualitative result),
paper (the paper's own settings, for a GPU). One table per paper, per dataset.

The ``cpu`` profile compresses training into a few epochs with a one-cycle learning rate (linear
warm-up, then linear decay to 0): measured on CIFAR-10 with the 0.29 M CNN, 5 one-cycle epochs
reach 81.1 % test accuracy where 8 epochs of the paper's step schedule reach 78.9 %.

Each entry also carries ``expect``: the floors the notebook's ``assert`` cells check at that
profile (at ``cpu`` and ``paper`` they are the reproduction targets; at ``smoke`` they are sanity
bounds, since seconds of training learn little).
"""
from __future__ import annotations

import copy

from .device import default_device

PROFILE_NAMES = ("smoke", "cpu", "paper")

_ADI_SMOKE_EXPECT = dict(min_clean_acc=0.2, max_nowm_trigger=0.5, min_wm_trigger=0.0, max_acc_drop=1.0)

ADI2018 = {
    "smoke": {
        "mnist": dict(model="mnist_cnn", lr=0.05, schedule="onecycle", epochs=1, n_train=1500, pretrained_epochs=1,
                      pretrained_lr=0.01, attack_epochs=1, attack_lr=0.01, n_attack=300, n_test=500,
                      transfer_dataset="fashion-mnist", transfer_n=300, transfer_epochs=1,
                      expect=_ADI_SMOKE_EXPECT),
        "cifar10": dict(model="cifar_cnn", lr=0.2, schedule="onecycle", epochs=1, n_train=1000, pretrained_epochs=1,
                        pretrained_lr=0.01, attack_epochs=1, attack_lr=0.01, n_attack=300, n_test=500,
                        transfer_dataset="cifar10-permuted", transfer_n=300, transfer_epochs=1,
                        expect=dict(_ADI_SMOKE_EXPECT, min_clean_acc=0.12)),
    },
    "cpu": {
        "mnist": dict(model="mnist_cnn", lr=0.05, schedule="onecycle", epochs=3, n_train=None,
                      pretrained_epochs=1, pretrained_lr=0.01, attack_epochs=5, attack_lr=0.01,
                      n_attack=None, n_test=None, transfer_dataset="fashion-mnist", transfer_n=10000,
                      transfer_epochs=3,
                      expect=dict(min_clean_acc=0.98, max_nowm_trigger=0.2, min_wm_trigger=0.95,
                                  max_acc_drop=0.015)),
        "cifar10": dict(model="cifar_cnn", lr=0.2, schedule="onecycle", epochs=5, n_train=None,
                        pretrained_epochs=1, pretrained_lr=0.01, attack_epochs=5, attack_lr=0.01,
                        n_attack=None, n_test=None, transfer_dataset="cifar10-permuted",
                        transfer_n=None, transfer_epochs=3,
                        expect=dict(min_clean_acc=0.80, max_nowm_trigger=0.2, min_wm_trigger=0.95,
                                    max_acc_drop=0.015)),
    },
    "paper": {
        "mnist": dict(model="mnist_cnn", lr=0.05, schedule="step", epochs=20, n_train=None, pretrained_epochs=10,
                      pretrained_lr=0.01, attack_epochs=20, attack_lr=0.01, n_attack=None, n_test=None,
                      transfer_dataset="fashion-mnist", transfer_n=None, transfer_epochs=20,
                      expect=dict(min_clean_acc=0.99, max_nowm_trigger=0.2, min_wm_trigger=0.95,
                                  max_acc_drop=0.01)),
        "cifar10": dict(model="resnet18", lr=0.1, schedule="step", epochs=60, n_train=None, pretrained_epochs=30,
                        pretrained_lr=0.01, attack_epochs=20, attack_lr=0.01, n_attack=None, n_test=None,
                        transfer_dataset="cifar10-permuted", transfer_n=None, transfer_epochs=20,
                        expect=dict(min_clean_acc=0.90, max_nowm_trigger=0.2, min_wm_trigger=0.95,
                                    max_acc_drop=0.01)),
        "cifar100": dict(model="resnet18", lr=0.1, schedule="step", epochs=60, n_train=None, pretrained_epochs=30,
                         pretrained_lr=0.01, attack_epochs=20, attack_lr=0.01, n_attack=None,
                         n_test=None, transfer_dataset="cifar10-permuted", transfer_n=None,
                         transfer_epochs=20,
                         expect=dict(min_clean_acc=0.70, max_nowm_trigger=0.1, min_wm_trigger=0.95,
                                     max_acc_drop=0.01)),
    },
}

PAPERS = {"adi2018": ADI2018}


def default_profile() -> str:
    """``paper`` on a GPU, ``cpu`` otherwise."""
    return "paper" if default_device().type == "cuda" else "cpu"


def get(paper: str, profile: str, dataset: str) -> dict:
    """The settings of ``paper`` at ``profile`` for ``dataset`` (a copy, safe to modify)."""
    if paper not in PAPERS:
        raise ValueError(f"paper={paper!r} is not known; accepted values: {sorted(PAPERS)}")
    if profile not in PROFILE_NAMES:
        raise ValueError(f"profile={profile!r} is not known; accepted values: {list(PROFILE_NAMES)}")
    table = PAPERS[paper][profile]
    if dataset not in table:
        raise ValueError(f"dataset={dataset!r} has no {profile!r} profile for {paper}; "
                         f"accepted values: {sorted(table)}")
    return copy.deepcopy(table[dataset])


def datasets(paper: str, profile: str) -> list[str]:
    return sorted(PAPERS[paper][profile])
