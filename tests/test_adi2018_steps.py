"""The experiment steps of the Adi et al. notebook (wmlib/papers/adi2018.py)."""
import dataclasses

import pytest
import torch
from scipy.stats import binom

from wmlib import attacks, claims, papers, settings
from wmlib import data as D
from wmlib.models import build_model
from wmlib.papers import adi2018 as A
from wmlib.schemes import adi
from wmlib.train import Trained, accuracy, predict
from wmlib.verdict import Verdict
from conftest import LookupModel, needs_mnist, random_data


# ----------------------------------------------------------------------------- settings
def test_settings_for_every_profile_and_tiny_keeps_the_models():
    assert set(A.SETTINGS["cpu"]) == {"mnist", "cifar10"}
    assert set(A.SETTINGS["paper"]) == {"mnist", "cifar10", "cifar100"}
    paper = papers.settings("adi2018", "paper", "cifar10")
    assert (paper.model, paper.lr, paper.epochs, paper.trigger_per_batch) == ("resnet18", 0.1, 60, 2)
    tiny = paper.tiny()
    assert (tiny.model, tiny.lr, tiny.schedule, tiny.trigger_per_batch) == ("resnet18_narrow", 0.1, "step", 2)
    assert tiny.epochs == tiny.pretrained_epochs == tiny.attack_epochs == tiny.transfer_epochs == 1
    assert max(tiny.n_train, tiny.n_attack, tiny.n_test, tiny.transfer_n) <= 100
    assert tiny.targets.asserted("max_nowm_trigger") and not tiny.targets.asserted("min_wm_trigger")
    smoke = A.SETTINGS["smoke"]["cifar10"].targets
    assert smoke.shown_only == ("min_wm_trigger", "max_acc_drop") and smoke.asserted("min_clean_acc")
    assert A.SETTINGS["cpu"]["cifar10"].targets.shown_only == ()
    with pytest.raises(ValueError, match="unknown setting.*accepted"):
        paper.replace(epoch=3)
    with pytest.raises(ValueError, match="trigger_preprocess="):
        paper.replace(trigger_preprocess="stretch")
    with pytest.raises(ValueError, match="transfer_dataset="):
        paper.replace(transfer_dataset="stl10")


def test_train_config_is_the_cache_key_of_the_profile():
    P = A.SETTINGS["cpu"]["cifar10"]
    cfg = P.train_config("cifar10", seed=3)
    assert dataclasses.asdict(cfg) == dict(model="cifar_cnn", dataset="cifar10", epochs=5, lr=0.2,
                                           momentum=0.9, weight_decay=5e-4, batch_size=100,
                                           schedule="onecycle", n_train=None, seed=3)


# ----------------------------------------------------------------------------- functionality
MEASURED = {"NO-WM": {"test": 0.811, "trigger": 0.07},
            "FROMSCRATCH": {"test": 0.803, "trigger": 0.99},
            "PRETRAINED": {"test": 0.790, "trigger": 0.94}}
CPU = A.AdiTargets(min_clean_acc=0.80, max_nowm_trigger=0.2, min_wm_trigger=0.95, max_acc_drop=0.015)


def test_functionality_claims_against_profile_targets():
    c = A.functionality_claims(MEASURED, CPU)
    assert c["NO-WM"] == {"test": True, "trigger": True}
    assert c["FROMSCRATCH"] == {"test": True, "trigger": True}
    assert c["PRETRAINED"] == {"test": False, "trigger": False}   # drops 2.1 points, 94 % < 95 %
    assert not A.functionality_claims({**MEASURED, "NO-WM": {"test": 0.811, "trigger": 0.3}},
                                      CPU)["NO-WM"]["trigger"]


def _random_claim(matches=10):
    return adi.verdict(matches, 100, 10)


def test_checks_assert_the_profile_targets_and_the_adversary():
    checks = settings.Checks("cpu", CPU)
    A.add_checks(checks, MEASURED)
    A.add_adversary_check(checks, _random_claim())
    assert checks["PRETRAINED trigger accuracy ≥ 95 %"] is False
    with pytest.raises(AssertionError, match="PRETRAINED"):
        checks.assert_all()
    # at smoke the watermarked models' targets are shown, not asserted
    smoke = settings.Checks("smoke", dataclasses.replace(CPU, shown_only=("min_wm_trigger", "max_acc_drop")))
    A.add_checks(smoke, MEASURED)
    A.add_adversary_check(smoke, _random_claim())
    smoke.assert_all()
    assert list(smoke.table()["asserted"]).count("shown only") == 4
    # an adversary that claims the model fails at every profile
    A.add_adversary_check(smoke, _random_claim(matches=30))
    with pytest.raises(AssertionError, match="adversary"):
        smoke.assert_all()


def test_functionality_rows_take_the_paper_numbers_from_the_claims():
    held = A.functionality_claims(MEASURED, CPU)
    rows = A.functionality_rows("cifar10", MEASURED, held, "cpu")
    by = {r.claim: r for r in rows}
    assert set(by) == {f"cifar10.{m}.{w}-acc" for m in ("nowm", "fromscratch", "pretrained")
                       for w in ("test", "trigger")}
    assert by["cifar10.nowm.test-acc"].paper == 93.42 and by["cifar10.nowm.test-acc"].ours == pytest.approx(81.1)
    assert by["cifar10.nowm.trigger-acc"].status == "reproduced"          # 7.0 vs 7.0
    assert by["cifar10.fromscratch.trigger-acc"].status == "reproduced"   # 99 vs 100, tolerance 5
    assert by["cifar10.fromscratch.test-acc"].status == "qualitatively"   # 80.3 vs 93.81, no drop
    assert by["cifar10.pretrained.test-acc"].status == "not yet"          # drops 2.1 points
    assert {r.status for r in A.functionality_rows("cifar10", MEASURED, held, "smoke")} == \
        {"not claimed at smoke"}
    assert {r.paper for r in A.functionality_rows("cifar100", MEASURED, held, "paper")} >= {74.01, 100.0}
    mnist = A.functionality_rows("mnist", MEASURED, held, "cpu")
    assert len(mnist) == 6 and all(r.claim == "" and r.paper is None and r.status == "not in paper"
                                   for r in mnist)


# ----------------------------------------------------------------------------- verification


def test_verification_table_thresholds_p_values_and_the_adversary():
    t = adi.procedural_trigger("cifar10", 100, seed=0)
    adversary = adi.procedural_trigger("cifar10", 100, seed=1)
    half = t.y.clone()
    half[50:] = (half[50:] + 1) % 10                     # 50 of 100 right
    models = {"owner": Trained(LookupModel(t.x, t.y)), "half": Trained(LookupModel(t.x, half)),
              "FROMSCRATCH": Trained(LookupModel(t.x, t.y))}
    table, claim = A.verification_table(models, t, adversary, classes=10)
    assert list(table.columns) == ["matches", "p-value", "claimed, k = 16", "claimed, k = 50",
                                   "claimed, k = 90"]
    assert table.loc["owner", "matches"] == 100 and table.loc["owner", "claimed, k = 90"]
    assert table.loc["half", "matches"] == 50
    assert table.loc["half", "claimed, k = 50"] and not table.loc["half", "claimed, k = 90"]
    assert table.loc["half", "p-value"] == pytest.approx(binom.sf(49, 100, 0.1))
    chance = table.loc["a model answering at random passes"]
    assert chance["claimed, k = 16"] == pytest.approx(binom.sf(15, 100, 0.1))   # 0.040
    assert chance["claimed, k = 90"] == pytest.approx(binom.sf(89, 100, 0.1))
    # the lookup answers 0 to the adversary's images: it matches only its labels that are 0
    assert isinstance(claim, Verdict) and claim.matches == int((adversary.y == 0).sum())
    assert not claim.passed and adi.matches_needed(claim) == 16
    assert table.loc["adversary's random set vs FROMSCRATCH", "matches"] == claim.matches


def test_nontrivial_ownership_row():
    claim = _random_claim(9)
    row = A.nontrivial_row("cifar10", claim, "cpu")
    assert row.claim == "cifar10.nontrivial-ownership" and row.ours == 9.0 and row.status == "qualitatively"
    assert A.nontrivial_row("cifar10", _random_claim(40), "cpu").status == "not yet"
    assert A.nontrivial_row("mnist", claim, "cpu").status == "not in paper"
    assert "CIFAR-10" in A.nontrivial_row("cifar100", claim, "paper").note


# ----------------------------------------------------------------------------- hooks and attacks
def test_monitors_read_test_and_trigger_accuracy_with_either_head():
    torch.manual_seed(0)
    model = build_model("mlp", "mnist").eval()
    data = random_data("mnist", 50, seed=1)
    trigger = adi.TriggerSet(data.x[:20], data.y[:20], "test")
    own = predict(model, data.x)                           # what the model answers (autocast and all)
    labelled = D.TensorData(data.x, own)                   # the model is right on every image
    row = A.monitor(labelled, trigger, n=30)(1, model)
    assert row["test_acc"] == 1.0 and row["trigger_acc"] == accuracy(model, trigger.x, trigger.y)
    owner_head = model.head
    other = attacks.with_head(model, torch.nn.Linear(owner_head.in_features, 10))
    hook = A.attack_monitor(labelled, adi.TriggerSet(data.x, own, "own labels"), owner_head, n=50)
    out = hook(1, other)
    assert out["trigger_acc_owner_head"] == 1.0 and out["trigger_acc"] < 0.5
    assert out["test_acc"] == out["trigger_acc"]           # same images, same labels


@pytest.fixture
def marked(model_cache):
    torch.manual_seed(0)
    return Trained(build_model("cifar_cnn", "cifar10").eval(), {"hash": "adi2018-steps-base", "seconds": 0})


def test_fine_tuning_table_rows_and_cache(marked):
    data = random_data("cifar10", 100, seed=2)
    split = D.Splits(train=data, attack=data, test=data, eval=random_data("cifar10", 50, seed=3))
    trigger = adi.procedural_trigger("cifar10", 20, seed=0)
    P = A.SETTINGS["smoke"]["cifar10"].replace(attack_lr=0.05)
    attacked = A.fine_tuning_attacks(P, marked, split, trigger, augment=False)
    assert list(attacked) == list(attacks.FINE_TUNING)
    assert all(not m.record["cache_hit"] and len(m.record["history"]) == 2 for m in attacked.values())
    table = A.fine_tuning_table(attacked, split.eval, trigger, marked.model.head, classes=10)
    base_trigger = 100 * accuracy(marked.model, trigger.x, trigger.y)
    # last-layer attacks leave the features alone: the owner's head reads the trigger set as before
    for v in ("FTLL", "RTLL"):
        assert table.loc[v, "trigger, owner's head"] == pytest.approx(base_trigger)
    assert table.loc["FTLL", "test accuracy"] == pytest.approx(
        100 * accuracy(attacked["FTLL"].model, split.eval.x, split.eval.y))
    assert A.fine_tuning_attacks(P, marked, split, trigger, augment=False)["FTAL"].record["cache_hit"]
    rows = A.fine_tuning_rows("cifar10", table, "cpu")
    assert [r.claim for r in rows] == [f"cifar10.{v.lower()}.watermark-kept" for v in attacks.FINE_TUNING]
    for r, (_, t) in zip(rows, table.iterrows()):
        assert r.paper is None and r.ours == t["trigger, owner's head"]
        assert r.status == ("qualitatively" if t["claimed, owner's head"] else "not yet")
    assert all(r.status == "not in paper" for r in A.fine_tuning_rows("mnist", table, "cpu"))


def test_transfer_rows_name_stl10_and_our_stand_in():
    rows = A.transfer_rows("cifar10", "cifar10-permuted", 55.0, 30.0, "cpu")
    assert [r.claim for r in rows[:2]] == ["cifar10.transfer-stl10.test-acc", "cifar10.transfer-stl10.trigger-acc"]
    assert [r.paper for r in rows[:2]] == [81.9, 72.0] and rows[0].ours is None
    assert {r.status for r in rows[:2]} == {"needs online data"}
    assert [r.ours for r in rows[2:]] == [55.0, 30.0] and {r.status for r in rows[2:]} == {"not in paper"}
    assert rows[2].quantity.startswith("CIFAR-10 → permuted CIFAR-10")
    mnist = A.transfer_rows("mnist", "fashion-mnist", 80.0, 20.0, "cpu")
    assert len(mnist) == 2 and mnist[0].quantity.startswith("MNIST → Fashion-MNIST")


def test_every_claim_id_the_steps_can_name_exists():
    known = set(claims.load("adi2018"))
    for ds in A.PAPER_DATASETS:
        for m in A.MODELS.values():
            assert {f"{ds}.{m}.test-acc", f"{ds}.{m}.trigger-acc"} <= known
        assert {f"{ds}.{v.lower()}.watermark-kept" for v in attacks.FINE_TUNING} <= known
        assert {f"{ds}.transfer-stl10.test-acc", f"{ds}.transfer-stl10.trigger-acc"} <= known
    assert claims.get("adi2018", "cifar10.transfer-stl10.test-acc").not_attempted == "needs online data: STL-10"


# ----------------------------------------------------------------------------- embedding (MNIST)
@needs_mnist
def test_train_models_and_measure(model_cache):
    P = A.SETTINGS["smoke"]["mnist"].replace(n_train=300, n_test=200)
    split = D.splits("mnist", n_train=P.n_train, n_test=P.n_test)
    trigger = adi.procedural_trigger("mnist", 20, seed=0)
    models = A.train_models(P, "mnist", trigger, split)
    assert list(models) == list(A.MODELS)
    assert models["PRETRAINED"].record["key"]["init"] == models["NO-WM"].hash
    assert models["FROMSCRATCH"].record["key"]["extra"] == adi.TriggerCycler(trigger, 10).digest
    for m in models.values():
        h = m.record["history"]
        assert [r["epoch"] for r in h] == [0, 1] and {"test_acc", "trigger_acc"} <= set(h[-1])
    measured = A.measure(models, split.test, trigger)
    assert all(0 <= v["test"] <= 1 and 0 <= v["trigger"] <= 1 and not v["cached"] for v in measured.values())
    assert measured["NO-WM"]["test"] == accuracy(models["NO-WM"].model, split.test.x, split.test.y)
    again = A.measure(A.train_models(P, "mnist", trigger, split), split.test, trigger)
    assert all(v["cached"] for v in again.values())
    table = A.measured_table(measured)
    assert list(table.columns) == ["test accuracy", "trigger accuracy", "training minutes", "from the cache"]
    assert set(table["from the cache"]) == {"no"}
    banner = A.banner(P, "mnist", "smoke", split, "cpu")
    assert banner.startswith("Produced at profile smoke on mnist") and D.SOURCES[D.source("mnist")] in banner
