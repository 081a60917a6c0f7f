import pytest
import torch

import wmlib.train as T
from wmlib import data as D
from wmlib.models import build_model
from conftest import needs_mnist, random_data


def _one_epoch(seed):
    torch.manual_seed(0)
    model = build_model("cifar_cnn", "cifar10")
    data = random_data("cifar10", 64)
    T.fit(model, data, epochs=1, lr=0.1, batch_size=16, augment=True, seed=seed, progress=False)
    return model.state_dict()


def test_seeded_training_is_deterministic():
    a, b, c = _one_epoch(1), _one_epoch(1), _one_epoch(2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


@needs_mnist
def test_trained_model_beats_a_floor_and_is_cached(model_cache, monkeypatch):
    cfg = T.TrainConfig("mnist_cnn", "mnist", epochs=1, lr=0.05, n_train=5000)
    first = T.train(cfg, progress=False)
    assert not first.record["cache_hit"]
    test = D.load("mnist", "test").head(2000)
    acc = T.accuracy(first.model, test.x, test.y)
    assert acc >= 0.90, acc
    files = sorted(p.name for p in (model_cache / "models").iterdir())
    assert len(files) == 2 and not any(f.endswith(".tmp") for f in files)

    def no_training(*a, **k):
        raise AssertionError("a cached model was trained again")
    monkeypatch.setattr(T, "fit", no_training)
    second = T.train(cfg, progress=False)
    assert second.record["cache_hit"] and second.hash == first.hash
    assert T.accuracy(second.model, test.x, test.y) == acc
    # another configuration is another entry
    with pytest.raises(AssertionError, match="trained again"):
        T.train(T.TrainConfig("mnist_cnn", "mnist", epochs=1, lr=0.05, n_train=5000, seed=1), progress=False)


def test_failed_training_leaves_nothing(model_cache, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("interrupted")
    monkeypatch.setattr(T, "fit", boom)
    monkeypatch.setattr(D, "splits", lambda *a, **k: D.Splits(*(random_data("mnist", 10),) * 4))
    with pytest.raises(RuntimeError):
        T.train(T.TrainConfig("mlp", "mnist", epochs=1), progress=False)
    assert not (model_cache / "models").exists() or not any((model_cache / "models").iterdir())


def test_bad_config_names_the_parameter():
    with pytest.raises(ValueError, match="schedule=.*accepted values"):
        T.TrainConfig("mlp", "mnist", epochs=1, schedule="cosine")
    with pytest.raises(ValueError, match="trainable="):
        T.fit(build_model("mlp", "mnist"), random_data("mnist", 4), epochs=1, lr=0.1,
              trainable="body", progress=False)


def test_precision_is_measured_once_even_from_inside_no_grad(tmp_path, monkeypatch):
    """The first caller of the precision choice may be an evaluation under no_grad."""
    import json

    from wmlib import device
    monkeypatch.setenv("WMLIB_CACHE", str(tmp_path))
    monkeypatch.delenv("WMLIB_PRECISION", raising=False)
    device.precision.cache_clear()
    try:
        with torch.no_grad():
            chosen = device.precision("cpu")
        assert chosen in device.PRECISIONS
        kept = json.loads((tmp_path / "precision.json").read_text()) if (tmp_path / "precision.json").exists() else None
        if torch.backends.cpu.get_cpu_capability() in ("AVX512", "AVX512_BF16", "AMX"):
            (entry,) = kept.values()
            t = entry["seconds per step"]
            assert entry["precision"] == ("bf16" if t["bf16"] * 1.2 < t["fp32"] else "fp32")
        monkeypatch.setenv("WMLIB_PRECISION", "fp64")
        device.precision.cache_clear()
        with pytest.raises(ValueError, match="WMLIB_PRECISION"):
            device.precision("cpu")
    finally:
        device.precision.cache_clear()


def test_a_precision_timed_under_load_is_retimed_once_the_machine_is_idle(tmp_path, monkeypatch):
    """Under load bf16 timed slower than fp32 (0.39 against 0.17 s per step; idle 0.096) and the
    choice stuck: a timing taken busy is kept while the machine stays busy, replaced once idle."""
    import json

    from wmlib import device
    monkeypatch.setenv("WMLIB_CACHE", str(tmp_path))
    monkeypatch.delenv("WMLIB_PRECISION", raising=False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512_BF16")
    timings = {"busy": {None: 0.17, torch.bfloat16: 0.39}, "idle": {None: 0.17, torch.bfloat16: 0.096}}
    state = {"now": "busy", "timed": 0}

    def step_seconds(dtype):
        state["timed"] += 1
        return timings[state["now"]][dtype]
    monkeypatch.setattr(device, "train_step_seconds", step_seconds)
    monkeypatch.setattr(device, "busy_fraction", lambda: {"busy": 0.9, "idle": 0.05}[state["now"]])
    try:
        for now, expected, timed in (("busy", "fp32", 2), ("busy", "fp32", 2), ("idle", "bf16", 4), ("busy", "bf16", 4)):
            state["now"] = now
            device.precision.cache_clear()
            assert device.precision("cpu") == expected, now
            assert state["timed"] == timed                      # re-timed only busy → idle
        kept = json.loads((tmp_path / "precision.json").read_text())
        (entry,) = kept.values()
        assert entry["busy"] == 0.05 and entry["seconds per step"]["bf16"] == 0.096
    finally:
        device.precision.cache_clear()


def _zero_grad_fit(**kw):
    """A model whose loss has zero gradient (lr for Adam, SGD without momentum): only weight decay moves it."""
    torch.manual_seed(0)
    model = build_model("mlp", "mnist")
    data = random_data("mnist", 40)
    T.fit(model, data, epochs=3, lr=0.1, momentum=0.0, batch_size=20, schedule="constant", progress=False,
          criterion=lambda out, x, y: 0.0 * out.sum(), **kw)
    return model


def test_adam_and_weight_decay_for_the_first_epochs_only():
    torch.manual_seed(0)
    start = build_model("mlp", "mnist").head.weight.detach().clone()
    # SGD with weight decay wd and zero loss: w ← w·(1 − lr·wd) per step, 2 steps an epoch
    always = _zero_grad_fit(weight_decay=0.5).head.weight
    one = _zero_grad_fit(weight_decay=0.5, decay_epochs=1).head.weight
    assert torch.allclose(always, start * (1 - 0.05) ** 6, rtol=1e-5)
    assert torch.allclose(one, start * (1 - 0.05) ** 2, rtol=1e-5)
    none = _zero_grad_fit(weight_decay=0.5, decay_epochs=0).head.weight
    assert torch.equal(none, start)
    # Adam: a real step moves the weights by about lr (its first step is lr·sign of the gradient)
    torch.manual_seed(0)
    model = build_model("mlp", "mnist")
    before = model.head.weight.detach().clone()
    T.fit(model, random_data("mnist", 20), epochs=1, lr=1e-3, batch_size=20, weight_decay=0.0,
          optimizer="adam", schedule="constant", progress=False)
    step = (model.head.weight - before).abs()
    assert step.max().item() == pytest.approx(1e-3, rel=0.05)
    for bad, name in (({"optimizer": "lbfgs"}, "optimizer="), ({"decay_epochs": -1}, "decay_epochs=")):
        with pytest.raises(ValueError, match=name):
            _zero_grad_fit(**bad)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8])
def test_onecycle_runs_for_any_number_of_steps(n):
    """torch's OneCycleLR divides by zero when its warm-up ends on the first step (4 steps at a
    quarter of warm-up): every short run must train, and the rate must have moved off its start."""
    model = build_model("mlp", "mnist")
    before = [p.detach().clone() for p in model.parameters()]
    hist = T.fit(model, random_data("mnist", n * 10), epochs=1, lr=0.05, batch_size=10, schedule="onecycle",
                 progress=False)
    assert len(hist) >= 1
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
