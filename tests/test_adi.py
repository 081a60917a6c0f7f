import pytest
import torch
from PIL import Image
from scipy.stats import binom
from torchvision.transforms import functional as TF

from wmlib import data as D
from wmlib.schemes import adi
from wmlib.train import TrainConfig, accuracy
from wmlib.verdict import Verdict
from conftest import LookupModel, needs_mnist, needs_trigger


@needs_trigger
def test_authors_trigger_pairing_and_shapes():
    root = D.data_root() / "adi-trigger"
    labels = [int(float(v)) for v in (root / "labels-cifar.txt").read_text().split()]
    t = adi.authors_trigger("cifar10")
    assert t.x.shape == (100, 3, 32, 32) and t.x.dtype == torch.uint8
    assert t.y.tolist() == labels
    # sorted *string* order: 1.jpg, 10.jpg, 100.jpg, 11.jpg ... ; the 2nd image is 10.jpg's centre
    ten = TF.pil_to_tensor(TF.center_crop(Image.open(root / "pics" / "10.jpg").convert("RGB"), [32, 32]))
    assert torch.equal(t.x[1], ten)
    m = adi.authors_trigger("mnist")
    assert m.x.shape == (100, 1, 28, 28) and m.y.tolist() == labels
    # every image as torchvision's center_crop and pil_to_tensor give it (wmlib crops with PIL alone)
    files = sorted((root / "pics").glob("*.jpg"), key=lambda p: p.name)
    for got, mode, size in ((t.x, "RGB", 32), (m.x, "L", 28)):
        want = torch.stack([TF.pil_to_tensor(TF.center_crop(Image.open(f).convert(mode), [size, size])) for f in files])
        assert torch.equal(got, want), mode
    r = adi.authors_trigger("cifar10", preprocess="resize")
    assert r.x.shape == t.x.shape and not torch.equal(r.x, t.x)
    few = adi.authors_trigger("cifar10", n=20)          # the first 20, pairs kept
    assert torch.equal(few.x, t.x[:20]) and few.y.tolist() == labels[:20]
    with pytest.raises(ValueError, match="n=0"):
        adi.authors_trigger("cifar10", n=0)


def test_missing_trigger_set_names_the_variable(tmp_path):
    with pytest.raises(D.DatasetMissing, match="WMLIB_DATA"):
        adi.authors_trigger("cifar10", root=tmp_path)
    with pytest.raises(ValueError, match="preprocess="):
        adi.authors_trigger("cifar10", preprocess="stretch", root=tmp_path)


def test_procedural_trigger_is_seeded():
    a, b, c = (adi.procedural_trigger("cifar10", 20, seed=s) for s in (1, 1, 2))
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and not torch.equal(a.x, c.x)
    assert a.x.shape == (20, 3, 32, 32) and int(a.y.max()) < 10
    assert a.x.float().std() > 20          # images, not flat fields


def test_cycler_shows_every_trigger_once_per_round():
    t = adi.procedural_trigger("mnist", 100, seed=0)
    cyc = adi.TriggerCycler(t, per_batch=2)
    it = cyc.batches(torch.Generator().manual_seed(0))
    seen = [next(it) for _ in range(50)]
    assert all(x.shape == (2, 1, 28, 28) for x, _ in seen)
    imgs = torch.cat([x for x, _ in seen])
    assert len({row.numpy().tobytes() for row in imgs}) == 100
    again = adi.TriggerCycler(t, per_batch=2).batches(torch.Generator().manual_seed(0))
    assert torch.equal(next(again)[0], seen[0][0])


def test_verification_threshold_and_p_value():
    t = adi.procedural_trigger("cifar10", 100, seed=0)
    owner = adi.verify(LookupModel(t.x, t.y), t, classes=10)
    assert isinstance(owner, Verdict) and owner.scheme == adi.SCHEME
    assert owner.score == 1.0 and owner.matches == 100 and owner.n == 100 and owner.passed
    # k = 16: P[Bin(100, 0.1) >= 16] = 0.0399 <= 0.05 < P[>= 15] = 0.0726
    assert adi.matches_needed(owner) == 16 and owner.threshold == 0.16
    assert owner.p_value == pytest.approx(1e-100, rel=1e-6)       # 0.1 ** 100
    wrong = (t.y + 1) % 10
    wrong[:20] = t.y[:20]                     # 20 of 100 right: above 16, below 0.5
    v = adi.verify(LookupModel(t.x, wrong), t, classes=10)
    assert v.matches == 20 and v.score == 0.2 and v.passed
    assert v.p_value == pytest.approx(binom.sf(19, 100, 0.1))     # 0.0020
    half = adi.verify(LookupModel(t.x, wrong), t, classes=10, threshold=0.5)
    assert adi.matches_needed(half) == 50 and not half.passed
    assert adi.verify(LookupModel(t.x, wrong), t, classes=10, threshold=0.2).passed
    assert adi.matches_needed(adi.verify(LookupModel(t.x, wrong), t, classes=10, threshold=0.9)) == 90
    with pytest.raises(ValueError, match="threshold="):
        adi.verify(LookupModel(t.x, wrong), t, classes=10, threshold=20)


def test_required_matches_for_more_classes_and_stricter_alpha():
    assert adi.required_matches(100, 10) == 16
    assert adi.required_matches(100, 10, alpha=0.01) == 19      # P[>= 18] = 0.0100 > 0.01 >= P[>= 19]
    assert adi.required_matches(100, 100) == 4                   # P[Bin(100, 0.01) >= 4] = 0.018
    assert adi.required_matches(100, 10, threshold=0.9) == 90


@needs_mnist
def test_fromscratch_learns_the_trigger_set_and_no_wm_does_not(model_cache):
    trigger = adi.procedural_trigger("mnist", 10, seed=0)
    # each trigger image is seen 2 x 50 batches x 5 epochs / 10 = 50 times
    cfg = TrainConfig("mlp", "mnist", epochs=5, lr=0.05, n_train=5000, schedule="constant")
    marked = adi.fromscratch(cfg, trigger, progress=False)
    test = D.load("mnist", "test").head(2000)
    assert accuracy(marked.model, trigger.x, trigger.y) >= 0.9
    assert accuracy(marked.model, test.x, test.y) >= 0.9
    from wmlib.train import train
    clean = train(cfg, progress=False)
    assert clean.hash != marked.hash
    assert accuracy(clean.model, trigger.x, trigger.y) <= 0.4
