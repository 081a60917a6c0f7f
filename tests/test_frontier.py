import pytest
import torch

from wmlib import attacks
from scipy import stats

from wmlib import data as D
from wmlib.schemes import frontier
from wmlib.train import TrainConfig, predict, train
from wmlib.verdict import Verdict
from conftest import needs_mnist


def test_paper_thresholds_come_out_of_the_null_model():
    assert frontier.extraction_threshold(100) == 42
    assert frontier.extraction_threshold(20) == 6
    # boundary counts: 41 mismatches of 100 have p < 0.05, 42 do not
    assert stats.binom.cdf(41, 100, 0.5) == pytest.approx(0.0443, abs=1e-4)
    assert stats.binom.cdf(42, 100, 0.5) == pytest.approx(0.0666, abs=1e-4)


class _Fixed(torch.nn.Module):
    """Answers label 0 for every input whose first pixel is < 0.5, else label 1."""

    def forward(self, x):
        s = (x.flatten(1)[:, 0] >= 0.5).float()
        return torch.stack([1 - s, s], 1) * 10


def test_extraction_counts_mismatches_and_p_value():
    x = torch.rand(100, 1, 4, 4)
    y = (x.flatten(1)[:, 0] >= 0.5).long()
    key = frontier.Key(x, y.clone(), torch.zeros(100, dtype=torch.bool), torch.arange(100))
    ok = frontier.extract(_Fixed(), key)
    assert isinstance(ok, Verdict) and ok.n == 100 and ok.score == 1.0
    assert frontier.mismatches(ok) == 0 and ok.passed and ok.p_value == pytest.approx(2.0 ** -100)
    assert ok.threshold == pytest.approx(59 / 100)          # m_K < θ = 42  ⇔  matches ≥ 59
    key.y[:41] = 1 - key.y[:41]
    e = frontier.extract(_Fixed(), key)
    assert frontier.mismatches(e) == 41 and e.matches == 59 and e.passed and e.p_value < 0.05
    assert e.score == e.threshold                            # the boundary count is reachable
    assert e.p_value == pytest.approx(stats.binom.cdf(41, 100, 0.5))
    key.y[41] = 1 - key.y[41]
    boundary = frontier.extract(_Fixed(), key)
    assert frontier.mismatches(boundary) == 42 and not boundary.passed and boundary.p_value > 0.05


def test_extraction_threshold_of_a_small_key_is_reachable():
    x = torch.rand(20, 1, 4, 4)
    y = (x.flatten(1)[:, 0] >= 0.5).long()
    key = frontier.Key(x, y.clone(), torch.zeros(20, dtype=torch.bool), torch.arange(20))
    key.y[:5] = 1 - key.y[:5]                                # θ = 6: 5 mismatches still pass
    assert frontier.extract(_Fixed(), key).passed
    key.y[5] = 1 - key.y[5]
    assert not frontier.extract(_Fixed(), key).passed


def test_fgsm_stays_in_range_and_moves_by_eps():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x = torch.rand(64, 1, 4, 4)
    y = torch.randint(0, 3, (64,))
    adv = attacks.fgsm(model, x, y, eps=0.1)
    assert adv.min() >= 0 and adv.max() <= 1
    moved = (adv - x).abs()
    assert moved.max() <= 0.1 + 1e-6
    unclipped = (adv > 0) & (adv < 1)
    assert torch.allclose(moved[unclipped], torch.full_like(moved[unclipped], 0.1), atol=1e-6)
    with pytest.raises(ValueError, match="eps="):
        attacks.fgsm(model, x, y, eps=-1)


@needs_mnist
def test_key_is_half_true_half_false_adversaries(model_cache):
    base = train(TrainConfig("mlp", "mnist", epochs=1, lr=0.05, n_train=3000), progress=False)
    model = base.model
    s = D.splits("mnist", n_attack=1000)
    key = frontier.make_key(model, s.attack.x, s.attack.y, size=20, eps=0.1, seed=0)
    assert len(key) == 20 and int(key.true_adversary.sum()) == 10
    # cached candidates: the same adversaries, read back from disk the second time
    fresh = frontier.adversaries(model, s.attack.x, s.attack.y, 0.1)
    first = frontier.cached_adversaries(base, s.attack, 0.1)
    assert len(list((model_cache / "candidates").glob("*.pt"))) == 1
    second = frontier.cached_adversaries(base, s.attack, 0.1)
    for c in (first, second):
        assert torch.equal(c.x, fresh.x) and torch.equal(c.true_adversary, fresh.true_adversary)
        assert torch.equal(c.source_index, fresh.source_index) and c.eps == 0.1 and c.norm == "linf"
    assert torch.equal(second.key(20, seed=0).x, key.x)
    frontier.cached_adversaries(base, s.attack, 0.25)
    assert len(list((model_cache / "candidates").glob("*.pt"))) == 2       # ε is part of the key
    src = D.to_float(s.attack.x[key.source_index])
    assert (predict(model, src) == key.y).all()                      # sources classified right
    wrong = predict(model, key.x) != key.y
    assert torch.equal(wrong, key.true_adversary)                     # true = misclassified now
    assert ((key.x - src).abs().max() <= 0.1 + 1e-6)
    with pytest.raises(ValueError, match="size="):
        frontier.make_key(model, s.attack.x, s.attack.y, size=7, eps=0.1)


@needs_mnist
def test_marking_stitches_the_frontier_and_extraction_tells_marked_from_unmarked(model_cache):
    s = D.splits("mnist", n_train=3000, n_attack=2000)
    base = train(TrainConfig("mlp", "mnist", epochs=2, lr=0.05, n_train=3000), progress=False)
    key = frontier.make_key(base.model, s.attack.x, s.attack.y, size=20, eps=0.25, seed=0)
    before = frontier.extract(base.model, key)
    assert frontier.mismatches(before) == 10    # exactly the true adversaries are wrong
    assert not before.passed and before.score == 0.5
    data = s.train.head(1000)
    marked, epochs = frontier.mark(base, key, data, lr=0.02, max_epochs=40, per_batch=10)
    assert epochs is not None and 1 <= epochs <= 40
    after = frontier.extract(marked.model, key)
    assert frontier.mismatches(after) == 0 and after.passed and after.p_value < 1e-5
    test = D.load("mnist", "test").head(2000)
    acc = lambda m: float((predict(m, test.x) == test.y).float().mean())  # noqa: E731
    assert acc(marked.model) >= acc(base.model) - 0.02
    again, epochs_again = frontier.mark(base, key, data, lr=0.02, max_epochs=40, per_batch=10)
    assert again.record["cache_hit"] and epochs_again == epochs


@pytest.mark.parametrize("norm,p", [("l2", 2), ("l1", 1)])
def test_fgsm_l1_l2_move_by_eps_in_their_norm(norm, p):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    x = 0.25 + 0.5 * torch.rand(32, 1, 8, 8)          # far from the clip bounds
    y = torch.randint(0, 3, (32,))
    adv = attacks.fgsm(model, x, y, eps=0.5, norm=norm)
    step = (adv - x).flatten(1)
    assert torch.allclose(step.norm(p=p, dim=1), torch.full((32,), 0.5), atol=1e-5)
    grad_dir = attacks.fgsm(model, x, y, eps=1e-3, norm="linf") - x      # same ascent direction
    assert ((step.sign() == grad_dir.flatten(1).sign()) | (step == 0)).all()
    with pytest.raises(ValueError, match="norm="):
        attacks.fgsm(model, x, y, eps=0.1, norm="l3")


def test_candidates_split_true_and_false_and_keys_are_seeded():
    cands = frontier.Candidates(torch.rand(10, 1, 2, 2), torch.arange(10) % 2,
                                torch.tensor([True] * 3 + [False] * 7), torch.arange(10), 0.1, "linf")
    assert cands.fooling_rate == pytest.approx(0.3)
    k1, k2 = cands.key(6, seed=1), cands.key(6, seed=1)
    assert torch.equal(k1.x, k2.x) and int(k1.true_adversary.sum()) == 3
    with pytest.raises(ValueError, match="needs 4 of each"):
        cands.key(8)


@needs_mnist
def test_overwriting_fine_tunes_on_fresh_adversaries_and_is_cached(model_cache):
    s = D.splits("mnist", n_train=2000, n_attack=300)
    base = train(TrainConfig("mlp", "mnist", epochs=1, lr=0.05, n_train=2000), progress=False)
    adv_before = attacks.fgsm(base.model, s.attack.x, s.attack.y, 0.25)
    fooled_before = float((predict(base.model, adv_before) != s.attack.y).float().mean())
    attacked = attacks.overwrite(base, s.attack, eps=0.25, lr=0.05, epochs=5)
    fooled_after = float((predict(attacked.model, adv_before) != s.attack.y).float().mean())
    assert fooled_after < fooled_before - 0.3     # it learned its adversaries' labels
    again = attacks.overwrite(base, s.attack, eps=0.25, lr=0.05, epochs=5)
    assert again.record["cache_hit"] and not attacked.record["cache_hit"]
