"""``wmbook verify``: key files written and read back for the five schemes, suspect files loaded safely,
verdicts on the owner's file, a stolen copy (fine-tuned, then every zero-cost edit) and an independent
model; every bad input one line on stderr and exit status 2."""
import json
import os
import pickle
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from wmlib import attacks, cli, keys, modelfile
from wmlib import data as D
from wmlib.schemes import adi, frontier, weights
from wmlib.train import TrainConfig, accuracy, train

CFG = TrainConfig(model="cifar_cnn", dataset="mnist", epochs=6, lr=0.1, schedule="onecycle", n_train=1000)
"""Small owners (a batch-norm CNN, so that batch-norm rescaling is among the edits): ≈ 3 s each."""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Per scheme: its key folder and the suspects' files (owner, stolen, independent)."""
    root = tmp_path_factory.mktemp("verify")
    test = D.load("mnist", "test").subset(slice(5000, 6000))
    trig = adi.procedural_trigger("mnist", n=20, seed=0)
    owner = adi.fromscratch(CFG, trig, per_batch=10, progress=False)
    ind = [train(replace(CFG, seed=s, epochs=3), progress=False) for s in (1, 2, 3, 4)]   # independents: half the epochs
    wkey, vals = weights.make_key(owner.model, n=300, seed=0), weights.payload(300, seed=0)
    tart = weights.watermark(CFG, wkey, vals, progress=False)
    null = [weights.correlation(i.model, wkey, vals, owner=tart.model)[0] for i in ind[:3]]
    # Le Merrer's MNIST ε = 0.25: at 0.1 the true adversaries do not transfer and an independent model
    # answers 18 of 20 key inputs like the owner (measured); 16 key inputs per batch mark in 7 epochs
    fkey = frontier.make_key(ind[0].model, test.x[:300], test.y[:300], size=20, eps=0.25)
    fown, took = frontier.mark(ind[0], fkey, D.load("mnist", "train").subset(slice(0, 1000)), lr=0.01,
                               max_epochs=10, per_batch=16)
    assert took is not None, "the frontier key was not stitched in 10 epochs"
    arch = dict(dataset="mnist", architecture="cifar_cnn")
    smooth = dict(sigma=0.01, m=100, threshold=0.5, radii=[0.0, 0.005, 0.01])
    made = {"adi": (owner, keys.adi_key(trig, **arch)),
            "frontier": (fown, keys.frontier_key(fkey, **arch)),
            "tartaglione": (tart, keys.tartaglione_key(wkey, vals, tart.model, null=null, **arch)),
            "bansal": (owner, keys.bansal_key(trig, owner.model, **arch, **smooth)),
            "ipcert": (owner, keys.ipcert_key(trig, owner.model, **arch, **smooth))}
    out = {}
    for scheme, (o, key) in made.items():
        folder = keys.write(key, root / f"key-{scheme}")
        ft = attacks.fine_tune(o, "FTAL", test.head(500), epochs=1, lr=0.001, progress=False)
        files = {"owner": o, "fine-tuned": ft, "stolen": attacks.zero_cost_edit(ft, 0),
                 "permuted": attacks.permute_units(o, 1), "independent": ind[3]}
        out[scheme] = {"key": folder, "test acc": {n: accuracy(files[n].model, test.x, test.y, fp32=True)
                                                   for n in ("fine-tuned", "stolen")},     # what the edits keep
                       **{n: modelfile.save(t.model, root / f"{scheme}-{n}.safetensors") for n, t in files.items()}}
    out["root"], out["null"] = root, null
    return out


def run(*args, capsys=None):
    code = cli.main([str(a) for a in args])
    if capsys is None:
        return code
    got = capsys.readouterr()
    return code, got.out, got.err


@pytest.mark.parametrize("scheme", keys.SCHEMES)
def test_claims_the_owner_and_a_stolen_copy_not_an_independent_model(world, scheme, capsys):
    w = world[scheme]
    for suspect in ("owner", "fine-tuned", "permuted", "stolen"):
        code, out, err = run("verify", "--key", w["key"], "--model", w[suspect], "--json", capsys=capsys)
        v = json.loads(out)
        assert code == cli.CLAIMED and v["claimed"] and v["score"] >= v["threshold"], (scheme, suspect, v, err)
    code, out, _ = run("verify", "--key", w["key"], "--model", w["independent"], "--json", capsys=capsys)
    v = json.loads(out)
    assert code == cli.NOT_CLAIMED and not v["claimed"] and v["score"] < v["threshold"], (scheme, v)
    # the stolen copy is the fine-tuned one with every zero-cost edit: its accuracy is the fine-tuned one's
    assert abs(w["test acc"]["stolen"] - w["test acc"]["fine-tuned"]) <= 0.002


def test_the_black_box_verdicts_are_those_of_the_schemes(world, capsys):
    """A score read through the command is the scheme's own (Adi: trigger accuracy, p from scipy)."""
    from scipy import stats
    code, out, _ = run("verify", "--key", world["adi"]["key"], "--model", world["adi"]["owner"], "--json", capsys=capsys)
    v = json.loads(out)
    k = round(v["score"] * v["n"])
    assert v["p_value"] == pytest.approx(stats.binom.sf(k - 1, v["n"], 0.1), rel=1e-9)
    # k is the fewest matches a uniform guesser reaches with chance at most 5 %
    need = round(v["threshold"] * v["n"])
    assert stats.binom.sf(need - 1, v["n"], 0.1) <= 0.05 < stats.binom.sf(need - 2, v["n"], 0.1)


def test_alignment_is_what_reads_a_permuted_weight_watermark(world, capsys):
    """Tartaglione's key is a list of positions: as the paper reads the stolen file it is lost, aligned it
    is claimed against the threshold calibrated on the aligned independent models."""
    w = world["tartaglione"]
    code, out, _ = run("verify", "--key", w["key"], "--model", w["stolen"], "--json", "--no-align", capsys=capsys)
    v = json.loads(out)
    assert code == cli.NOT_CLAIMED and abs(v["score"]) < 0.2 and not v["aligned"]
    code, out, _ = run("verify", "--key", w["key"], "--model", w["stolen"], "--json", capsys=capsys)
    v = json.loads(out)
    assert code == cli.CLAIMED and v["score"] > 0.9 and "dummy units removed" in v["alignment"]
    # the larger of the paper's threshold for 300 positions and the one calibrated on the aligned null
    want = max(weights.threshold(300, weights.ALPHA), weights.calibrated_threshold(world["null"])[0])
    assert v["threshold"] == pytest.approx(want)


def test_smoothed_verdicts_print_their_seed_and_radius(world, capsys):
    w = world["ipcert"]
    code, out, err = run("verify", "--key", w["key"], "--model", w["owner"], "--seed", 3, "--quiet", capsys=capsys)
    assert code == cli.CLAIMED and out.startswith("CLAIMED") and "noise seed 3" in out and out.count("\n") == 1
    code, out, _ = run("verify", "--key", w["key"], "--model", w["owner"], "--seed", 3, "--json", capsys=capsys)
    v = json.loads(out)
    assert v["seed"] == 3 and v["certified_radius"] in (0.0, 0.005, 0.01)


def test_the_console_script_is_installed():
    """The script's own process: a parse error exits 2 with one line."""
    r = subprocess.run([str(Path(sys.executable).parent / "wmbook"), "verify", "--key"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--key" in r.stderr


# ----------------------------------------------------------------------------- bad input
def _bad(world, capsys, model=None, key=None, extra=()):
    code, out, err = run("verify", "--key", key or world["adi"]["key"], "--model", model or world["adi"]["owner"],
                         *extra, capsys=capsys)
    assert code == cli.BAD_INPUT and out == "" and err.count("\n") == 1 and err.startswith("wmbook verify: "), err
    return err


def _state(world):
    return modelfile.load(world["adi"]["owner"], "cifar_cnn", "mnist").state_dict()


class Marker:
    """A pickle whose loading would create a file: ``weights_only=True`` must refuse it unrun."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_a_pickle_that_runs_code_is_refused_without_running(world, capsys):
    marker = world["root"] / "pwned"
    path = world["root"] / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"conv": Marker(marker)}, f)
    err = _bad(world, capsys, model=path)
    assert "refused" in err and not marker.exists()
    torch.save({"state_dict": _state(world), "hook": Marker(marker)}, path)      # inside PyTorch's zip format too
    err = _bad(world, capsys, model=path)
    assert "refused" in err and not marker.exists()


@pytest.mark.parametrize("case", ["missing file", "truncated", "nan", "missing tensor", "extra tensor", "misshaped",
                                  "not a state dict", "layers that do not fit"])
def test_a_bad_model_file_gets_one_line_and_exit_2(world, capsys, case):
    path, state = world["root"] / f"bad-{case.replace(' ', '-')}.pt", _state(world)
    first = next(k for k in state if k.endswith("weight") and state[k].dim() == 4)
    if case == "truncated":
        good = Path(world["adi"]["owner"]).with_suffix(".pt")
        torch.save(state, good)
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif case == "nan":
        state[first][0, 0, 0, 0] = float("nan")
    elif case == "missing tensor":
        del state[first]
    elif case == "extra tensor":
        state["backdoor.weight"] = torch.zeros(3)
    elif case == "misshaped":
        state[first] = state[first].flatten()
    elif case == "not a state dict":
        state = [1, 2, 3]
    elif case == "layers that do not fit":      # one tensor widened alone: no dummy unit does that
        state[first] = torch.cat([state[first], state[first][:2]])
    if case not in ("missing file", "truncated"):
        torch.save(state, path)
    err = _bad(world, capsys, model=path)
    want = {"missing file": "no such file", "truncated": "truncated", "nan": "NaN", "missing tensor": "missing tensors",
            "extra tensor": "backdoor.weight", "misshaped": "misshaped", "not a state dict": "not a state dict",
            "layers that do not fit": "do not fit"}[case]
    assert want in err and (case in ("missing file", "truncated", "not a state dict") or first in err or "backdoor" in err)


def test_a_widened_file_loads_and_a_safetensors_file_too(world):
    """A file with dummy units (wider layers) is read as such; alignment removes them later."""
    m = modelfile.load(world["adi"]["stolen"], "cifar_cnn", "mnist")
    own = modelfile.load(world["adi"]["owner"], "cifar_cnn", "mnist")
    assert sum(p.numel() for p in m.parameters()) > sum(p.numel() for p in own.parameters())


def test_a_key_that_does_not_match_its_digest_is_refused(world, capsys, tmp_path):
    import shutil
    for case in ("manifest", "tensors", "missing"):
        folder = tmp_path / case
        shutil.copytree(world["adi"]["key"], folder)
        if case == "manifest":
            man = json.loads((folder / "manifest.json").read_text())
            man["settings"]["alpha"] = 0.5
            (folder / "manifest.json").write_text(json.dumps(man))
        elif case == "tensors":
            keys.write(keys.adi_key(adi.procedural_trigger("mnist", 20, seed=9), dataset="mnist",
                                    architecture="cifar_cnn"), tmp_path / "other")
            shutil.copy(tmp_path / "other" / "key.safetensors", folder / "key.safetensors")
        else:
            (folder / "key.safetensors").unlink()
        err = _bad(world, capsys, key=folder)
        assert {"manifest": "digest does not match the manifest's contents", "tensors": "does not match the manifest",
                "missing": "is missing"}[case] in err
    assert "not a key folder" in _bad(world, capsys, key=tmp_path / "nothing")


def test_bad_arguments_exit_2_with_one_line(world, capsys):
    if not torch.cuda.is_available():
        assert "no CUDA device" in _bad(world, capsys, extra=("--device", "cuda"))
    assert "invalid choice" in _bad(world, capsys, extra=("--device", "tpu"))
    with pytest.raises(keys.BadKey, match="scheme='adi2'"):
        keys.Key("adi2", "mnist", "cifar_cnn", {}, {})
    with pytest.raises(keys.BadKey, match="at least 3"):
        keys.tartaglione_key(weights.Key(("a",), (0,)), torch.zeros(1), torch.nn.Linear(1, 1), dataset="mnist",
                             architecture="cifar_cnn", null=[0.1])
    with pytest.raises(ValueError, match="null"):
        weights.calibrated_threshold([0.1])


def test_attack_writes_an_edited_file_that_is_still_claimed(world, capsys, tmp_path):
    w = world["ipcert"]
    out = tmp_path / "edited.pt"
    code, text, _ = run("attack", "--key", w["key"], "--model", w["owner"], "--attack", "rescale-bn",
                        "--out", out, capsys=capsys)
    assert code == 0 and out.is_file() and "largest logit change" in text
    code, text, _ = run("verify", "--key", w["key"], "--model", out, "--json", capsys=capsys)
    assert code == cli.CLAIMED
    code, text, _ = run("verify", "--key", w["key"], "--model", out, "--json", "--no-align", capsys=capsys)
    assert json.loads(text)["alignment"] is None
    code, _, err = run("attack", "--key", w["key"], "--model", w["owner"], "--attack", "melt", "--out", out,
                       capsys=capsys)
    assert code == cli.BAD_INPUT and "invalid choice" in err


def test_a_frontier_key_with_a_calibrated_threshold_uses_the_stricter_one(world, capsys, tmp_path):
    """θ assumes a coin-flipping model; a threshold calibrated on independent models may be stricter (the
    verdict uses the larger) — and a key whose threshold is below θ keeps θ."""
    key = keys.read(world["frontier"]["key"])
    owner = modelfile.load(world["frontier"]["owner"], "cifar_cnn", "mnist")
    paper = keys.verify(key, owner)
    strict = keys.frontier_key(frontier.Key(key.tensors["x"], key.tensors["y"].long(), torch.zeros(0, dtype=torch.bool),
                                            torch.zeros(0, dtype=torch.long)), dataset="mnist", architecture="cifar_cnn",
                               threshold=0.99)
    folder = keys.write(strict, tmp_path / "strict")
    code, out, _ = run("verify", "--key", folder, "--model", world["frontier"]["owner"], "--json", capsys=capsys)
    v = json.loads(out)
    assert v["threshold"] == 0.99 > paper.threshold and code == cli.CLAIMED and v["score"] == 1.0
    lax = keys.write(replace(strict, settings={**strict.settings, "threshold": 0.1}), tmp_path / "lax")
    assert keys.verify(keys.read(lax), owner).threshold == paper.threshold
    # calibrated on three models never marked with this key: the stricter of θ and their prediction bound
    from wmlib.stats import prediction_bound
    others = [modelfile.load(world[s][n], "cifar_cnn", "mnist") for s, n in
              (("adi", "owner"), ("tartaglione", "owner"), ("frontier", "independent"))]
    fkey = frontier.Key(key.tensors["x"], key.tensors["y"].long(), torch.zeros(0, dtype=torch.bool),
                        torch.zeros(0, dtype=torch.long))
    cal = keys.calibrated_frontier_key(fkey, others, dataset="mnist", architecture="cifar_cnn")
    bound = prediction_bound([keys.verify(key, m).score for m in others], 0.05)[0]
    assert cal.settings["threshold"] == pytest.approx(bound)
    assert keys.verify(cal, owner).threshold == pytest.approx(max(bound, paper.threshold))
    assert keys.calibrated_frontier_key(fkey, others[:2], dataset="mnist", architecture="cifar_cnn").settings["threshold"] is None


def test_the_worked_example_s_sentence_and_checks_follow_its_verdicts():
    """The page's sentence and the notebook's checks come from the exit statuses: right when the owner's
    file and the stolen copy are claimed and the independent model is not, and each wrong one named."""
    import pandas as pd

    from wmlib.settings import Checks, Targets
    right = pd.DataFrame({"claimed": [True, True, False]}, index=["owner", "stolen", "independent"])
    assert cli.rehearsal_finding(right) == "`wmbook verify` claims owner and stolen, not independent: as it should."
    wrong = right.assign(claimed=[False, True, True])
    assert "wrong for owner and independent" in cli.rehearsal_finding(wrong)
    assert cli.rehearsal_finding(right.assign(claimed=False)).startswith("`wmbook verify` claims none of the 3 files")
    checks = Checks("cpu", Targets())
    cli.rehearsal_checks(checks, wrong, asserted=True)
    assert [r["holds"] for r in checks.rows] == [False, True, False]
    with pytest.raises(AssertionError):
        checks.assert_all()
    shown = Checks("smoke", Targets())
    cli.rehearsal_checks(shown, wrong, asserted=False)
    shown.assert_all()                      # shown only: a wrong verdict at smoke is reported, not raised


@pytest.mark.parametrize("scheme", ["bansal", "ipcert"])
def test_smoothed_votes_are_cached_by_the_files_content(world, scheme, monkeypatch, tmp_path):
    """The votes behind a smoothed verdict are computed once per suspect content, trigger set, σ, m and seed:
    a rerun on the same file reads them back (no noisy forward pass, the same verdict); one weight changed,
    or another seed, computes them afresh. (Read as the paper reads the file, to skip alignment's cost: the
    aligned suspect is a deterministic function of the file, cached the same way.)"""
    from wmlib.align import file_stamp
    monkeypatch.setenv("WMLIB_CACHE", str(tmp_path))          # votes of no earlier run
    key = keys.read(world[scheme]["key"])
    suspect = modelfile.load(world[scheme]["fine-tuned"], "cifar_cnn", "mnist")
    first = keys.verify(key, suspect, align=False, seed=11)
    calls = []
    real = keys.noisy_votes
    monkeypatch.setattr(keys, "noisy_votes", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert keys.verify(key, suspect, align=False, seed=11) == first and calls == []
    keys.verify(key, suspect, align=False, seed=12)
    assert len(calls) == 1
    with torch.no_grad():
        next(suspect.parameters()).view(-1)[0] += 1e-3
    keys.verify(key, suspect, align=False, seed=11)
    assert len(calls) == 2
    assert file_stamp(suspect) != file_stamp(modelfile.load(world[scheme]["fine-tuned"], "cifar_cnn", "mnist"))
