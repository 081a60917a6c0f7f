"""Tartaglione et al. 2020: the experiment steps of wmlib.papers.tartaglione2020 and the oracle
attacks on given coordinates, on a small task that learns in seconds (no dataset needed)."""
import numpy as np
import pandas as pd
import pytest
import torch

from conftest import template_task
from wmlib import attacks
from wmlib import data as D
from wmlib.models import build_model
from wmlib.papers import tartaglione2020 as tg
from wmlib.schemes import weights as W
from wmlib.settings import Checks
from wmlib.models import Classifier, Normalize
from wmlib.train import Trained, fit


@pytest.fixture(scope="module")
def owner():
    """A LeNet5-caffe trained unwatermarked, naive and robust on a template task (seconds)."""
    torch.manual_seed(0)
    task = template_task(1200, seed=1)
    split = D.Splits(task.head(1000), template_task(200, seed=2), template_task(200, seed=3),
                     template_task(300, seed=4))
    key = W.make_key(build_model("lenet5_caffe", "mnist"), seed=0)
    values = W.payload(seed=0, scale=1.0)
    kw = dict(epochs=6, lr=0.05, momentum=0.9, weight_decay=1e-4, schedule="onecycle", progress=False)
    nets = {}
    for name in ("unmarked", "naive", "robust"):
        torch.manual_seed(0)
        m = build_model("lenet5_caffe", "mnist")
        if name == "unmarked":
            fit(m, split.train, **kw)
        else:
            W.train_embedded(m, split.train, key, values, robust=name == "robust", **kw)
        digest = D.digest(*(p.detach() for p in m.parameters()))      # evaluations are cached by content
        nets[name] = Trained(m.eval(), {"hash": f"test-tartaglione-{name}-{digest}", "seconds": 1.0})
    others = {"unwatermarked": nets["unmarked"]}       # the aligned extraction's null: three more seeds
    for s in (1, 2, 3):
        torch.manual_seed(s)
        m = build_model("lenet5_caffe", "mnist")
        fit(m, split.train, **dict(kw, epochs=2))
        others[f"seed {s}"] = Trained(m.eval(), {"hash": f"test-tartaglione-null-{s}", "seconds": 1.0})
    return tg.Owner("lenet5_caffe", key, values, others=others, **nets), split


def test_owner_models_learn_and_carry_the_watermark(owner):
    o, split = owner
    table = tg.functionality_table({"lenet5_caffe": o}, split.eval)
    f = table.xs("LeNet5-caffe", level="model")
    assert (f.loc[["naive", "robust"], "test accuracy"] > 80).all(), f     # the template task is easy
    # LeNet5-caffe's N(0, 0.01²) initialisation barely moves in 60 steps without a payload: the
    # check names that failure
    assert f.loc["naive", "correlation"] == pytest.approx(1.0, abs=1e-6)
    assert f.loc["robust", "correlation"] == pytest.approx(1.0, abs=1e-6)
    assert f.loc["unwatermarked", "p-value"] > 1e-3 and f.loc["unwatermarked", "claimed"] == "no"
    assert f.loc["unwatermarked", "test accuracy"] < 50
    checks = Checks("cpu", tg.TartaglioneTargets(min_clean_acc=0.8, max_acc_drop=0.05))
    tg.add_checks(checks, {"lenet5_caffe": o}, table)
    assert not checks["LeNet5-caffe: unwatermarked test accuracy ≥ 80 %"]
    assert checks["LeNet5-caffe naive: extracted correlation 1"] and checks["LeNet5-caffe: the unwatermarked model is not claimed"]
    with pytest.raises(AssertionError, match="unwatermarked test accuracy"):
        checks.assert_all()


def test_key_table_accounts_for_every_position(owner):
    o, _ = owner
    t = tg.key_table({"lenet5_caffe": o}).xs("LeNet5-caffe", level="model")
    assert t["key positions"].sum() == W.PAYLOAD_SIZE
    assert t["parameters"].sum() == sum(p.numel() for p in o.naive.model.parameters())
    assert t["tensors"].sum() == len(list(o.naive.model.parameters()))
    assert set(t.index) == {"weights (convolutions, linear layers)", "biases", "output layer"}
    # drawn uniformly over the flattened model: each kind holds its share, within sampling noise
    share = t["key positions"] / W.PAYLOAD_SIZE - t["parameters"] / t["parameters"].sum()
    assert share.abs().max() < 0.01
    bn = tg.key_table({"resnet32": tg.Owner("resnet32", W.make_key(build_model("resnet32", "cifar10")), o.values,
                                            *(Trained(build_model("resnet32", "cifar10"), {}),) * 3)})
    assert "batch-norm scale and shift" in bn.index.get_level_values("kind")


def test_noise_and_set_at_touch_only_the_given_coordinates(owner):
    o, _ = owner
    where = o.key.coordinates()
    moved = attacks.noise_at(o.naive, where, 0.5, seed=3).model
    zeroed = attacks.set_at(o.naive, where, 0.0).model
    before = torch.cat([p.detach().flatten() for p in o.naive.model.parameters()])
    after = torch.cat([p.detach().flatten() for p in moved.parameters()])
    changed = (before != after).nonzero().flatten()
    assert len(changed) == W.PAYLOAD_SIZE              # exactly the key positions moved
    diff = (W.read_values(moved, o.key) - W.read_values(o.naive.model, o.key)).numpy()
    assert 0.45 < diff.std() < 0.55                    # by N(0, 0.5²)
    assert torch.equal(W.read_values(zeroed, o.key), torch.zeros(W.PAYLOAD_SIZE, dtype=torch.float64))
    assert W.extract(zeroed, o.key, o.values).score == 0 and not W.extract(zeroed, o.key, o.values).passed
    # seeded: the same noise twice; the base is never edited
    again = attacks.noise_at(o.naive, where, 0.5, seed=3).model
    assert torch.equal(W.read_values(again, o.key), W.read_values(moved, o.key))
    assert W.extract(o.naive.model, o.key, o.values).score == pytest.approx(1.0)
    with pytest.raises(ValueError, match="where names tensors"):
        attacks.set_at(o.naive, {"nope.weight": torch.tensor([0])}, 0.0)


def test_noise_on_the_key_lowers_the_correlation_as_theory_says(owner):
    """Independent noise of s·std(payload) gives an expected correlation of 1/sqrt(1 + s²)."""
    o, split = owner
    P = tg.SETTINGS["cpu"]["mnist"].replace(key_noise=(0.3, 1.0, 3.0))
    v = tg.valley_table(P, {"lenet5_caffe": o}, split.eval)
    for s in (0.3, 1.0, 3.0):
        got = v[(v.noise == s) & (v.embedding == "naive")].correlation.item()
        assert got == pytest.approx(1 / np.sqrt(1 + s * s), abs=0.03)
    zeroed = v[np.isinf(v.noise)]
    assert (zeroed.correlation == 0).all()


def test_attack_steps_produce_the_panels(owner):
    o, split = owner
    P = tg.SETTINGS["cpu"]["mnist"].replace(ft_epochs=1, bits=(8, 2), prune_rates=(0.9,),
                                            reset_fractions=(0.001, 0.05), repair_epochs=1)
    owners = {"lenet5_caffe": o}
    ft = tg.fine_tuning(P, owners, split, augment=False, progress=False)
    assert len(ft) == 2 * 2 * 2                         # embeddings x learning rates x epochs 0..1
    assert (ft[ft.epoch == 0].correlation > 1 - 1e-6).all()
    comp = tg.compression_table(P, owners, split.eval)
    q8 = comp[(comp.attack == "quantisation") & (comp.level == 8)]
    assert (q8.correlation > 0.999).all()               # 256 levels keep the payload
    informed = tg.informed_attack(P, owners, split, augment=False, progress=False)
    big = informed[informed["fraction reset"] == 0.05]
    assert (big["claimed, repaired"] == "no").all()     # 5 % of the weights covers the key (~0.8 %)
    rows = tg.informed_rows(informed)
    assert all(r.ours is not None and r.status == "not in paper" for r in rows)


def _tables(ft_naive, ft_robust, q_naive, q_robust, zero_naive, zero_robust, acc=(99.0, 99.2)):
    m = "LeNet5-caffe"
    func = pd.DataFrame({"model": m, "embedding": ["unwatermarked", "naive", "robust"],
                         "test accuracy": [99.1, *acc]}).set_index(["model", "embedding"])
    ft = pd.DataFrame([{"model": m, "embedding": e, "lr": lr, "epoch": ep, "correlation": c, "accuracy": 99.0}
                       for e, c in (("naive", ft_naive), ("robust", ft_robust)) for lr in (0.01, 0.1)
                       for ep, c in ((0, 1.0), (1, c))])
    comp = pd.DataFrame([{"model": m, "embedding": e, "attack": "quantisation", "level": b, "correlation": c,
                          "accuracy": 90.0} for e, c in (("naive", q_naive), ("robust", q_robust)) for b in (8, 2)])
    valley = pd.DataFrame([{"model": m, "embedding": e, "noise": np.inf, "correlation": 0.0, "accuracy lost": z}
                           for e, z in (("naive", zero_naive), ("robust", zero_robust))])
    return func, ft, comp, valley


def test_claim_rows_read_the_statements():
    P = tg.SETTINGS["cpu"]["mnist"]
    holds = tg.claim_rows("mnist", P, *_tables(0.5, 0.9, 0.9, 0.95, 10.0, 30.0), profile="cpu")
    assert {r.claim.split(".", 2)[-1] for r in holds} == {
        "fine-tuning.robust-above-naive", "quantization.robust-above-naive", "accuracy-preserved",
        "moving-watermark-costs-accuracy"}
    assert all(r.status == "qualitatively" for r in holds), [(r.claim, r.status) for r in holds]
    assert holds[0].ours == pytest.approx(0.4)
    fails = tg.claim_rows("mnist", P, *_tables(0.999, 0.999, 0.9, 0.8, 10.0, 5.0, acc=(99.0, 97.0)), profile="cpu")
    assert all(r.status == "not yet" for r in fails), [(r.claim, r.status) for r in fails]
    # equal correlations (what quantisation gives when the payload sets each tensor's range) are not "higher"
    equal = tg.claim_rows("mnist", P, *_tables(0.9995, 0.9996, 0.956, 0.956, 10.0, 30.0), profile="cpu")
    assert [r.status for r in equal][:2] == ["not yet", "not yet"]
    smoke = tg.claim_rows("mnist", P, *_tables(0.5, 0.9, 0.9, 0.95, 10.0, 30.0), profile="smoke")
    assert all(r.status == "not claimed at smoke" for r in smoke)


def test_poster_models_not_trained_at_a_profile_need_a_gpu():
    P = tg.SETTINGS["cpu"]["cifar10"]
    assert P.models == ("resnet32",)
    func, ft, comp, valley = _tables(0.5, 0.9, 0.9, 0.95, 10.0, 30.0)
    for t in (func, ft, comp, valley):
        t.replace("LeNet5-caffe", "ResNet-32", inplace=True)
    func.index = func.index.set_levels(["ResNet-32"], level="model")
    rows = tg.claim_rows("cifar10", P, func, ft, comp, valley, profile="cpu")
    allcnn = [r for r in rows if ".allcnn." in r.claim]
    assert len(allcnn) == 4 and all(r.status == "needs GPU" and r.ours is None for r in allcnn)
    assert all(r.status == "qualitatively" for r in rows if ".resnet32." in r.claim)


def test_settings_reject_a_model_of_another_paper():
    with pytest.raises(ValueError, match="accepted values"):
        tg.SETTINGS["cpu"]["mnist"].replace(models=("cifar_cnn",))


def test_late_step_schedule_drops_at_half_and_five_sixths():
    m = torch.nn.Linear(2, 2)
    data = D.TensorData(torch.zeros(10, 1, 1, 2, dtype=torch.uint8), torch.zeros(10, dtype=torch.long))
    lrs = []
    model = Classifier(Normalize((0.0,), (1.0,)), torch.nn.Flatten(), m)
    fit(model, data, epochs=12, lr=0.1, batch_size=10, schedule="late-step", progress=False,
        after_step=lambda model, opt, epoch, step: lrs.append(opt.param_groups[0]["lr"]))
    assert lrs[:6] == [pytest.approx(0.1)] * 6
    assert lrs[6:10] == [pytest.approx(0.01)] * 4 and lrs[10:] == [pytest.approx(0.001)] * 2


def _stand_in_tables(naive_ft_low: float, robust_zero_cost: float):
    """Stand-in tables of one model (the shapes the notebook's steps return)."""
    m = "LeNet5-caffe"
    func = pd.DataFrame([{"model": m, "embedding": e, "test accuracy": a, "correlation": c, "p-value": p,
                          "claimed": cl} for e, a, c, p, cl in (("unwatermarked", 99.0, 0.01, 0.6, "no"),
                                                                ("naive", 98.5, 1.0, 0.0, "yes"),
                                                                ("robust", 98.9, 1.0, 0.0, "yes"))]).set_index(["model", "embedding"])
    ft = pd.DataFrame([{"model": m, "embedding": e, "lr": lr, "epoch": ep,
                        "correlation": 1.0 if ep == 0 else (naive_ft_low if e == "naive" else 0.999), "accuracy": 98.0}
                       for e in ("naive", "robust") for lr in (0.01, 0.1) for ep in (0, 1, 2)])
    comp = pd.DataFrame([{"model": m, "embedding": e, "attack": a, "level": lv, "correlation": 0.956, "accuracy": 90.0}
                         for e in ("naive", "robust") for a, lv in (("quantisation", 8), ("quantisation", 2),
                                                                    ("pruning", 0.9))])
    valley = pd.DataFrame([{"model": m, "embedding": e, "key weights": "set to 0", "noise": np.inf,
                            "correlation": 0.0, "accuracy lost": z} for e, z in (("naive", 15.0), ("robust", robust_zero_cost))])
    informed = pd.DataFrame([{"model": m, "embedding": e, "fraction reset": f, "correlation": 0.01,
                              "accuracy lost": 30.0, "correlation, repaired": 0.02, "accuracy lost, repaired": 1.2,
                              "claimed, repaired": "no" if f > 0.01 else "yes"}
                             for e in ("naive", "robust") for f in (0.01, 0.02)])
    return func, ft, comp, valley, informed


def test_the_findings_sentences_follow_the_measurements():
    """The page's "What we find" is computed: a rerun where fine-tuning washes the naive watermark
    out, or where zeroing the key costs the robust model less, says so."""
    P = tg.SETTINGS["smoke"]["mnist"]
    held = tg.findings(P, *_stand_in_tables(naive_ft_low=0.999, robust_zero_cost=18.5))
    assert "washes out neither watermark" in held["finetune"]
    assert "robust more by 3.5" in held["valley"] and "naive model 15.0 points" in held["valley"]
    assert "alike, within 0.001" in held["compression"] and "not claimed" in held["accuracy"]
    assert "erased by resetting 2.0% of the weights" in held["informed"]
    flipped = tg.findings(P, *_stand_in_tables(naive_ft_low=0.02, robust_zero_cost=11.0))
    assert "washes out the naive watermark" in flipped["finetune"] and "robust less by 4.0" in flipped["valley"]
