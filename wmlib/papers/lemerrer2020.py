"""Le Merrer, Pérez, Trédan 2020, *Adversarial frontier stitching for remote neural network
watermarking*: settings per profile and the experiment steps its notebook narrates.

The scheme itself (FGSM keys, marking, extraction) is :mod:`wmlib.schemes.frontier`; the attacks
(pruning, SVD compression, overwriting) are :mod:`wmlib.attacks`. This module trains the three
MNIST networks, marks them (Algorithm 1, §4.2), measures false positives on unmarked networks
(§4.3, Fig. 6), attacks the marked ones (§4.4, Tables 1–3) and edits their files at no cost
(:func:`zero_cost`). The paper's numbers are in ``claims/lemerrer2020.yaml``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .. import attacks, claims, units, zerocost
from .. import data as D
from .. import settings
from ..report import span
from ..schemes import frontier
from ..train import Trained, TrainConfig, evaluate, train

PAPER = "lemerrer2020"
NETS = ("MLP", "CNN", "IRNN")
TABLE_ORDER = ("CNN", "IRNN", "MLP")      # the order of the paper's Tables 1-3
ATTACKS = ("prune", "svd")
TABLES = {"prune": "table1", "svd": "table2", "overwrite": "table3"}


# ----------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Net(settings.Settings):
    """One of the paper's three MNIST networks: its model and training (§4), and how often it is
    marked, re-trained unmarked and attacked.

    ``mark_lr_factor`` × ``lr`` is the marking rate (the paper: a tenth); a marking gives up after
    ``mark_max_epochs`` epochs (the paper: 100, 1,000 for the IRNN). ``unmarked`` networks of
    ``unmarked_epochs`` epochs (seeds 1, 2, …) measure false positives. ``prune_rates`` /
    ``svd_rates``: the rates of Tables 1 and 2 (the paper compresses only the CNN and the MLP by SVD).
    """

    model: str
    lr: float
    epochs: int
    markings: int
    mark_lr_factor: float
    mark_max_epochs: int
    unmarked: int
    unmarked_epochs: int
    prune_rates: tuple[float, ...]
    svd_rates: tuple[float, ...]

    @property
    def mark_lr(self) -> float:
        return self.mark_lr_factor * self.lr

    def rates(self, attack: str) -> tuple[float, ...]:
        if attack not in ATTACKS:
            raise ValueError(f"attack={attack!r} is not known; accepted values: {list(ATTACKS)}")
        return self.prune_rates if attack == "prune" else self.svd_rates


@dataclass(frozen=True)
class Targets(settings.Targets):
    """What a profile checks: the median accuracy drop of each (network, |K|) at most
    ``max_median_drop`` points; at least ``min_extraction`` of the planned markings extracted; at
    most ``max_false_positives_at_05`` unmarked models passing with keys made at ε = 0.5; the CNN
    losing the fewest key elements to pruning at the largest common rate ≤ ``pruning_order_rate``."""

    max_median_drop: float = 1.0
    min_extraction: float = 1.0
    max_false_positives_at_05: int = 0
    pruning_order_rate: float = 0.75


@dataclass(frozen=True)
class Lemerrer(settings.Settings):
    """Settings of one profile (MNIST, the paper's only dataset).

    Data: ``n_train`` first images of the shuffled training set (None: all) train the networks and
    feed the marking; the test set (shuffled once) gives ``key_pool`` key candidates, then
    ``overwrite_n`` attacker images, then up to ``n_eval`` evaluation images (None: the rest).
    Marking (Alg. 1): keys of ``key_sizes`` at ``eps`` (l∞); ``mark_per_batch`` key inputs in
    each batch of 128, epochs of ``mark_epoch_size`` fresh training images. Fig. 5: CNN, |K| = 20,
    ``eps_runs`` markings at each ε of ``eps_sweep``; other norms: ``norm_runs`` markings at each
    ``norms`` ε. Fig. 6: keys of ``fp_key_size`` at each ε of ``fp_eps`` from the first ``fp_pool``
    test images (None: all). Tables 1–3 attack the markings with |K| = ``robust_key_size``;
    overwriting fine-tunes for ``overwrite_epochs`` epochs. The zero-cost edits apply to those
    markings of the networks ``zero_cost_nets``.
    """

    nets: dict
    schedule: str
    n_train: int | None
    eps: float
    key_sizes: tuple[int, ...]
    mark_epoch_size: int
    mark_per_batch: int
    key_pool: int
    eps_sweep: tuple[float, ...]
    eps_runs: int
    norms: dict
    norm_runs: int
    fp_eps: tuple[float, ...]
    fp_pool: int | None
    overwrite_n: int
    overwrite_epochs: int
    n_eval: int | None
    targets: Targets
    robust_key_size: int = 100
    fp_key_size: int = 100
    zero_cost_nets: tuple[str, ...] = NETS

    def __post_init__(self):
        unknown = sorted(set(self.nets) - set(NETS))
        if unknown:
            raise ValueError(f"nets: unknown network(s) {unknown}; accepted: {list(NETS)}")

    def table(self) -> pd.DataFrame:
        """The settings shared by the three networks (theirs: :meth:`networks_table`)."""
        return settings.Settings.table(self).drop(index="nets")

    def networks_table(self) -> pd.DataFrame:
        """One column per network, one row per setting of :class:`Net`."""
        df = pd.DataFrame({name: settings.Settings.table(net)["value"] for name, net in self.nets.items()})
        df.columns.name = "network"
        return df

    def tiny(self) -> "Lemerrer":
        """The same networks and every step at a size that runs in a minute or two on a CPU (the
        pixel-by-pixel IRNN is the slow part): 300 training images, one epoch, one marking of one
        epoch of 128 images per network and setting, keys of 10 and 20, unmarked networks left
        untrained, one rate per attack; the smoke profile's targets (sanity bounds). Networks too
        weak to give a key are skipped by the notebook, as any marking without a key is."""
        nets = {name: n.replace(epochs=1, markings=1, mark_max_epochs=1, unmarked=1, unmarked_epochs=0,
                                prune_rates=n.prune_rates[1:2], svd_rates=n.svd_rates[1:2])
                for name, n in self.nets.items()}
        return self.replace(nets=nets, n_train=300, key_sizes=(10, 20), mark_epoch_size=128,
                            key_pool=1000, eps_runs=1, norm_runs=1, fp_pool=500, overwrite_n=100,
                            overwrite_epochs=1, n_eval=300, robust_key_size=20, fp_key_size=20,
                            targets=SETTINGS["smoke"]["mnist"].targets)


PAPER_PRUNE = {"MLP": (0.25, 0.5, 0.75, 0.8), "CNN": (0.25, 0.5, 0.75, 0.85), "IRNN": (0.25, 0.5, 0.75)}
PAPER_SVD = {"MLP": (0.25, 0.5, 0.75, 0.9), "CNN": (0.25, 0.5, 0.75, 0.9), "IRNN": ()}


def _nets(models: dict, lr: dict, epochs: dict, **per_net) -> dict:
    """The three networks; each keyword of ``per_net`` is one value for all or a dict by network."""
    def pick(v, name):
        return v[name] if isinstance(v, dict) else v
    return {name: Net(model=models[name], lr=lr[name], epochs=epochs[name],
                      **{k: pick(v, name) for k, v in per_net.items()}) for name in NETS}


_SMOKE_TARGETS = Targets(max_median_drop=100.0, min_extraction=0.0, max_false_positives_at_05=1,
                         shown_only=("pruning_order_rate",))
_TARGETS = Targets(max_median_drop=1.0, min_extraction=1.0, max_false_positives_at_05=0,
                   pruning_order_rate=0.75)
_CPU_NETS = dict(models={"MLP": "mlp", "CNN": "mnist_cnn", "IRNN": "irnn_rows"},
                 lr={"MLP": 0.05, "CNN": 0.05, "IRNN": 0.02})

SETTINGS = {
    "smoke": {"mnist": Lemerrer(
        nets=_nets(**_CPU_NETS, epochs={"MLP": 1, "CNN": 1, "IRNN": 1}, markings=1,
                   mark_lr_factor=0.1, mark_max_epochs=3, unmarked=1, unmarked_epochs=1,
                   prune_rates=(0.5,), svd_rates={"MLP": (0.5,), "CNN": (0.5,), "IRNN": ()}),
        schedule="onecycle", n_train=1500, eps=0.1, key_sizes=(20, 100), mark_epoch_size=256,
        mark_per_batch=32, key_pool=2000, eps_sweep=(0.05,), eps_runs=1, norms={"linf": 0.1},
        norm_runs=1, fp_eps=(0.1, 0.25), fp_pool=1000, overwrite_n=100, overwrite_epochs=1,
        n_eval=500, zero_cost_nets=("CNN", "IRNN"), targets=_SMOKE_TARGETS)},
    "cpu": {"mnist": Lemerrer(
        nets=_nets(**_CPU_NETS, epochs={"MLP": 8, "CNN": 2, "IRNN": 8},
                   markings={"MLP": 8, "CNN": 3, "IRNN": 3},
                   mark_lr_factor={"MLP": 0.1, "CNN": 0.1, "IRNN": 0.25},
                   mark_max_epochs={"MLP": 100, "CNN": 100, "IRNN": 500},
                   unmarked={"MLP": 3, "CNN": 4, "IRNN": 3},
                   unmarked_epochs={"MLP": 8, "CNN": 1, "IRNN": 4},
                   prune_rates=PAPER_PRUNE, svd_rates=PAPER_SVD),
        schedule="onecycle", n_train=None, eps=0.25, key_sizes=(20, 100), mark_epoch_size=1000,
        mark_per_batch=32, key_pool=4000, eps_sweep=(0.025, 0.1, 0.5), eps_runs=2,
        norms={"l1": 150.0, "l2": 7.0, "linf": 0.25}, norm_runs=1, fp_eps=(0.025, 0.1, 0.25, 0.5),
        fp_pool=None, overwrite_n=1000, overwrite_epochs=5, n_eval=None, targets=_TARGETS)},
    "paper": {"mnist": Lemerrer(
        nets=_nets(models={"MLP": "mlp", "CNN": "mnist_cnn", "IRNN": "irnn_pixels"},
                   lr={"MLP": 0.05, "CNN": 0.05, "IRNN": 0.01},
                   epochs={"MLP": 20, "CNN": 12, "IRNN": 100}, markings=30, mark_lr_factor=0.1,
                   mark_max_epochs={"MLP": 100, "CNN": 100, "IRNN": 1000}, unmarked=10,
                   unmarked_epochs={"MLP": 20, "CNN": 12, "IRNN": 100},
                   prune_rates=PAPER_PRUNE, svd_rates=PAPER_SVD),
        schedule="step", n_train=None, eps=0.25, key_sizes=(20, 100), mark_epoch_size=1000,
        mark_per_batch=32, key_pool=4000, eps_sweep=(0.025, 0.1, 0.5), eps_runs=10,
        norms={"l1": 150.0, "l2": 7.0, "linf": 0.25}, norm_runs=10, fp_eps=(0.025, 0.1, 0.25, 0.5),
        fp_pool=None, overwrite_n=1000, overwrite_epochs=5, n_eval=None, targets=_TARGETS)},
}


# ----------------------------------------------------------------------------- the paper's numbers
def claim_id(table: str, net: str, column: str, rate: float | None = None) -> str:
    """The claim id of one cell of Tables 1–3, e.g. ``table1.cnn.75.removed``."""
    rate_part = "" if rate is None else f".{int(round(100 * rate))}"
    return f"{table}.{net.lower()}{rate_part}.{column}"


COLUMNS = {"removed": "key elements removed", "stdev": "standard deviation",
           "extraction": "extraction rate", "accuracy": "accuracy after"}
UNITS = {"markings": "count", "key elements removed": "of 100", "standard deviation": "of 100",
         "extraction rate": "%", "accuracy after": "%"}
# (network, |K|) → the claim of its mean accuracy drop after marking (ε = 0.25, l∞)
DROP_CLAIMS = {("MLP", 20): "fig4.mlp.k20.drop", ("MLP", 100): "fig4.mlp.k100.drop",
               ("IRNN", 20): "fig4.irnn.k20.drop", ("IRNN", 100): "fig4.irnn.k100.drop",
               ("CNN", 20): "norms.linf.drop"}
FP_CLAIMS = {0.025: "fig6.fp.eps-0.025", 0.1: "fig6.fp.eps-0.1", 0.5: "fig6.fp.eps-0.5"}


def plausible_accuracy() -> float:
    """The least accuracy (%) of a plausible attack (§4.4: 0.95)."""
    return claims.value(PAPER, "plausible.accuracy")


def paper_table(attack: str) -> pd.DataFrame:
    """The paper's Table 1 (``prune``), 2 (``svd``) or 3 (``overwrite``) from the claims file:
    index (network[, rate]), the four published columns and whether the attack is plausible."""
    if attack not in TABLES:
        raise ValueError(f"attack={attack!r} is not known; accepted values: {sorted(TABLES)}")
    table = TABLES[attack]
    rows = []
    for c in claims.load(PAPER).values():
        parts = c.id.split(".")
        if parts[0] != table or parts[-1] != "removed":
            continue
        net = {n.lower(): n for n in NETS}[parts[1]]
        rate = int(parts[2]) / 100 if len(parts) == 4 else None
        row = {"network": net, "rate": rate}
        for col, header in COLUMNS.items():
            row[header] = claims.value(PAPER, claim_id(table, net, col, rate))
        row["plausible"] = row["accuracy after"] >= plausible_accuracy()
        rows.append(row)
    df = pd.DataFrame(rows)
    return df.drop(columns="rate").set_index("network") if attack == "overwrite" else \
        df.set_index(["network", "rate"])


# ----------------------------------------------------------------------------- the experiment
@dataclass
class Data:
    """The test set shuffled once and cut in three: key candidates (removed from the evaluation,
    as the paper does), the attacker's images, the evaluation images; and the training images."""

    test: D.TensorData
    pool: D.TensorData
    attacker: D.TensorData
    evalset: D.TensorData
    train: D.TensorData


def split(P: Lemerrer, dataset: str) -> Data:
    s = D.splits(dataset, n_train=P.n_train)
    test = s.test
    return Data(test=test, pool=test.subset(torch.arange(P.key_pool)),
                attacker=test.subset(torch.arange(P.key_pool, P.key_pool + P.overwrite_n)),
                evalset=test.subset(torch.arange(P.key_pool + P.overwrite_n, len(test))).head(P.n_eval),
                train=s.train)


def train_config(P: Lemerrer, dataset: str, net: str, seed: int = 0, *, unmarked: int = 0) -> TrainConfig:
    """The training of ``net`` (``unmarked`` = i: the i-th independently trained copy, seed + i)."""
    n = P.nets[net]
    return TrainConfig(model=n.model, dataset=dataset, epochs=n.unmarked_epochs if unmarked else n.epochs,
                       lr=n.lr, schedule=P.schedule, n_train=P.n_train, seed=seed + unmarked)


def trainings(P: Lemerrer, dataset: str, seed: int = 0) -> dict[str, TrainConfig]:
    """The independent trainings of the notebook (jobs of a grid): each network and its unmarked copies."""
    out = {net: train_config(P, dataset, net, seed) for net in P.nets}
    out.update({f"{net} unmarked {i}": train_config(P, dataset, net, seed, unmarked=i)
                for net, n in P.nets.items() for i in range(1, n.unmarked + 1)})
    return out


class Experiment:
    """The steps of the notebook for one profile: trained networks, their key candidates (kept in
    memory per network, ε, norm and source), markings, false positives and attacks."""

    def __init__(self, P: Lemerrer, dataset: str = "mnist", seed: int = 0, progress: bool = False,
                 data: Data | None = None):
        self.P, self.dataset, self.seed, self.progress = P, dataset, seed, progress
        self.data = data or split(P, dataset)
        self.base: dict[str, Trained] = {}
        self._candidates: dict = {}

    # -- networks
    def config(self, net: str, *, unmarked: int = 0) -> TrainConfig:
        """The training of ``net`` (``unmarked`` = i: the i-th independently trained copy, seed + i)."""
        return train_config(self.P, self.dataset, net, self.seed, unmarked=unmarked)

    def train_networks(self) -> dict[str, Trained]:
        """§4: the owner's three networks (cached)."""
        for net in self.P.nets:
            self.base[net] = train(self.config(net), progress=self.progress)
        return self.base

    def unmarked_models(self) -> dict[str, list[Trained]]:
        """§4.3: networks of each type trained independently (seeds 1, 2, …) and never marked."""
        return {net: [train(self.config(net, unmarked=i), progress=self.progress)
                      for i in range(1, n.unmarked + 1)] for net, n in self.P.nets.items()}

    # -- keys and marking
    def candidates(self, net: str, eps: float, norm: str = "linf",
                   source: D.TensorData | None = None) -> frontier.Candidates:
        """Algorithm 1 step 1 on the key pool (or ``source``), cached on disk and in memory."""
        k = (net, eps, norm, source is None)
        if k not in self._candidates:
            src = self.data.pool if source is None else source
            self._candidates[k] = frontier.cached_adversaries(self.base[net], src, eps, norm)
        return self._candidates[k]

    def jobs(self) -> list[tuple[str, int, float, int, str]]:
        """Every marking of the notebook as (network, |K|, ε, run, norm): Fig. 4 (each network and
        key size at ε), Fig. 5 (CNN, |K| = 20, the ε sweep) and the other norms (CNN, |K| = 20)."""
        P = self.P
        jobs = [(net, size, P.eps, r, "linf") for net in P.nets for size in P.key_sizes
                for r in range(P.nets[net].markings)]
        jobs += [("CNN", 20, e, r, "linf") for e in P.eps_sweep for r in range(P.eps_runs)]
        jobs += [("CNN", 20, e, r, n) for n, e in P.norms.items() if n != "linf"
                 for r in range(P.norm_runs)]
        return jobs

    def mark_once(self, net: str, size: int, eps: float, run: int, norm: str = "linf") -> dict:
        """One marking: a key drawn with seed 1000 · seed + ``run`` and the network fine-tuned until
        stitched (Alg. 1), then extracted (Alg. 2). A key that cannot be drawn (too few true or false
        adversaries at this ε) gives a row with ``model`` None and the reason in ``note``."""
        n = self.P.nets[net]
        row = dict(net=net, size=size, eps=eps, norm=norm, run=run)
        try:
            key = self.candidates(net, eps, norm).key(size, seed=1000 * self.seed + run)
        except ValueError as err:
            return dict(row, epochs=np.nan, stitched=False, acc=np.nan, base_acc=np.nan,
                        mismatches=np.nan, p_value=np.nan, extracted=False, seconds=0.0,
                        model=None, key=None, note=str(err))
        marked, epochs = frontier.mark(self.base[net], key, self.data.train, lr=n.mark_lr,
                                       max_epochs=n.mark_max_epochs,
                                       per_batch=min(self.P.mark_per_batch, size),
                                       epoch_size=self.P.mark_epoch_size, seed=run, progress=self.progress)
        v = frontier.extract(marked.model, key)
        return dict(row, epochs=epochs, stitched=epochs is not None,
                    acc=100 * evaluate(marked, self.data.evalset),
                    base_acc=100 * evaluate(self.base[net], self.data.evalset),
                    mismatches=frontier.mismatches(v), p_value=v.p_value, extracted=v.passed,
                    seconds=marked.record["seconds"], model=marked, key=key, note="")

    def mark_all(self, jobs=None) -> pd.DataFrame:
        """:meth:`mark_once` for every job; ``drop`` = accuracy before − after (points)."""
        from tqdm.auto import tqdm
        jobs = self.jobs() if jobs is None else jobs
        marks = pd.DataFrame([self.mark_once(*job) for job in
                              tqdm(jobs, desc="markings", disable=not self.progress)])
        marks["drop"] = marks["base_acc"] - marks["acc"]
        return marks

    # -- false positives
    def false_positives(self, unmarked: dict[str, list[Trained]]) -> pd.DataFrame:
        """§4.3: keys of ``fp_key_size`` made on each owner's network at each ε of ``fp_eps`` (from
        the first ``fp_pool`` test images: they mark nothing), extracted from its unmarked twins.
        One row per (ε, network, unmarked model); a key that cannot be drawn leaves a row with a note."""
        rows = []
        source = self.data.test.head(self.P.fp_pool)
        for eps in self.P.fp_eps:
            for net in self.P.nets:
                try:
                    key = self.candidates(net, eps, source=source).key(self.P.fp_key_size, seed=self.seed)
                except ValueError as err:
                    rows.append(dict(eps=eps, net=net, model=None, mismatches=np.nan, p_value=np.nan,
                                     false_positive=np.nan, note=str(err)))
                    continue
                for i, m in enumerate(unmarked[net], 1):
                    v = frontier.extract(m.model, key)
                    rows.append(dict(eps=eps, net=net, model=i, mismatches=frontier.mismatches(v),
                                     p_value=v.p_value, false_positive=float(v.passed), note=""))
        return pd.DataFrame(rows, columns=["eps", "net", "model", "mismatches", "p_value",
                                           "false_positive", "note"])

    # -- attacks
    def attacked(self, marked: Trained, attack: str, rate: float) -> Trained:
        """Pruning (Table 1) or SVD compression (Table 2) of a marked model at ``rate``."""
        if attack not in ATTACKS:
            raise ValueError(f"attack={attack!r} is not known; accepted values: {list(ATTACKS)}")
        return (attacks.prune if attack == "prune" else attacks.svd_compress)(marked, rate)

    def outcome(self, attacked: Trained, key: frontier.Key, mismatches_before: int) -> dict:
        """What an attack did to one marked model: key elements removed (mismatches after − before),
        whether the mark is still extracted, the accuracy after (%; cached by the model's hash)."""
        v = frontier.extract(attacked.model, key)
        return dict(removed=frontier.mismatches(v) - mismatches_before, extracted=v.passed,
                    accuracy=100 * evaluate(attacked, self.data.evalset),
                    seconds=attacked.record.get("seconds", 0.0))

    def marked(self, marks: pd.DataFrame) -> pd.DataFrame:
        """The markings the attacks start from (:meth:`_marked`), one row each."""
        return self._marked(marks)

    def _marked(self, marks: pd.DataFrame) -> pd.DataFrame:
        """The markings the attacks start from: |K| = ``robust_key_size``, ε, l∞, with a model
        (stitched or not: removals count from the marked model)."""
        return marks[(marks["size"] == self.P.robust_key_size) & (marks.eps == self.P.eps)
                     & (marks.norm == "linf") & marks.model.notna()]

    def compression(self, marks: pd.DataFrame, attack: str) -> pd.DataFrame:
        """Tables 1–2, one row per (network, rate, marking)."""
        rows = []
        for _, r in self._marked(marks).iterrows():
            for rate in self.P.nets[r.net].rates(attack):
                rows.append(dict(net=r.net, rate=rate, run=r.run,
                                 **self.outcome(self.attacked(r.model, attack, rate), r.key, r.mismatches)))
        return pd.DataFrame(rows, columns=["net", "rate", "run", "removed", "extracted", "accuracy",
                                           "seconds"])

    def overwriting(self, marks: pd.DataFrame) -> pd.DataFrame:
        """Table 3: each marked model fine-tuned on FGSM adversaries (ε) of the attacker's images at
        its marking rate (cached), one row per (network, marking)."""
        rows = []
        for _, r in self._marked(marks).iterrows():
            attacked = attacks.overwrite(r.model, self.data.attacker, eps=self.P.eps,
                                         lr=self.P.nets[r.net].mark_lr, epochs=self.P.overwrite_epochs,
                                         seed=int(r.run), progress=self.progress)
            rows.append(dict(net=r.net, run=r.run, **self.outcome(attacked, r.key, r.mismatches)))
        return pd.DataFrame(rows, columns=["net", "run", "removed", "extracted", "accuracy", "seconds"])


# ----------------------------------------------------------------------------- zero-cost edits
def zero_cost(exp: Experiment, marks: pd.DataFrame, *, seed: int = 0,
              only: tuple[str, ...] | None = None) -> tuple[pd.DataFrame, dict[str, str]]:
    """Each zero-cost edit (:func:`wmlib.zerocost.study`) of the first marking that the attacks start
    from (|K| = ``robust_key_size``, ε, l∞) of each network of ``zero_cost_nets``, extracted as the
    paper does (Algorithm 2, :func:`wmlib.schemes.frontier.extract`: queries on the key) and after
    alignment to the owner's file (``only``: the edits; None: all). Returns the table indexed by (network, edit) and, by network,
    why one was left out (not in ``zero_cost_nets``; no marking; units :mod:`wmlib.units` cannot
    describe, as the IRNN's)."""
    marked, tables, skipped = exp._marked(marks), {}, {}
    for net in exp.P.nets:
        rows = marked[marked.net == net]
        if net not in exp.P.zero_cost_nets:
            skipped[net] = "not studied at this profile (zero_cost_nets)"
            continue
        if rows.empty:
            skipped[net] = f"no marking with |K| = {exp.P.robust_key_size} at this profile"
            continue
        r = rows.iloc[0]
        try:
            units.describe(r.model.model)
        except ValueError as err:
            reason = str(err).split(" (known")[0].split(": ", 1)[-1]
            skipped[net] = f"its units cannot be described ({reason})"
            continue

        def verify(t: Trained, key=r.key):
            return frontier.extract(t.model, key)
        tables[net] = zerocost.study(r.model, verify, exp.data.evalset, seed=seed, only=only)
    return (pd.concat(tables, names=["network"]) if tables else pd.DataFrame()), skipped


# ----------------------------------------------------------------------------- tables
def robustness_table(raw: pd.DataFrame, nets=TABLE_ORDER) -> pd.DataFrame:
    """Tables 1–3 as the paper prints them, from :meth:`Experiment.compression` or
    :meth:`Experiment.overwriting` rows: per network (and rate), markings, key elements removed
    (mean and standard deviation over markings), extraction rate (%), accuracy after (%), plausible."""
    by = ["net", "rate"] if "rate" in raw.columns else ["net"]
    rows = []
    for keys, g in raw.groupby(by, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        acc = float(g.accuracy.mean())
        rows.append({**dict(zip(["network", "rate"], keys)), "markings": len(g),
                     "key elements removed": float(g.removed.mean()),
                     "standard deviation": float(g.removed.std(ddof=1)) if len(g) > 1 else np.nan,
                     "extraction rate": 100 * float(g.extracted.astype(float).mean()),
                     "accuracy after": acc, "plausible": acc >= plausible_accuracy()})
    index = ["network", "rate"] if len(by) == 2 else ["network"]
    cols = index + ["markings", *COLUMNS.values(), "plausible"]
    df = pd.DataFrame(rows, columns=cols).set_index(index)
    order = [n for n in nets if n in df.index.get_level_values(0)]
    return df.loc[order] if len(df) else df


ATTACK_TABLES = {"prune": "Table 1", "svd": "Table 2", "overwrite": "Table 3"}


def robustness_tables(exp: "Experiment", marks: pd.DataFrame, attack: str,
                      profile: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Tables 1–3 (``attack`` prune / svd / overwrite): the raw per-marking rows, our table and
    the paper's, each table's header naming where it comes from."""
    if attack not in ATTACK_TABLES:
        raise ValueError(f"attack={attack!r} is not known; accepted values: {list(ATTACK_TABLES)}")
    raw = exp.overwriting(marks) if attack == "overwrite" else exp.compression(marks, attack)
    ours = robustness_table(raw)
    ours.columns.name = f"ours at profile {profile}"
    paper = paper_table(attack)
    paper.columns.name = f"the paper ({ATTACK_TABLES[attack]})"
    return raw, ours, paper


def marking_summary(marks: pd.DataFrame, eps: float) -> pd.DataFrame:
    """Fig. 4 in numbers: per (network, |K|) at ``eps`` (l∞), the markings, how many hit the
    epoch cap, the median epochs, the median and mean accuracy drop (points) and the fraction
    extracted, beside the paper's mean drop where it gives one."""
    main = marks[(marks.eps == eps) & (marks.norm == "linf")]
    out = (main.groupby(["net", "size"], sort=False)
           .agg(**{"markings": ("run", "size"),
                   "not stitched": ("stitched", lambda s: int((~s.astype(bool)).sum())),
                   "epochs (median)": ("epochs", lambda s: float(pd.to_numeric(s, errors="coerce").median())),
                   "drop (median)": ("drop", "median"), "drop (mean)": ("drop", "mean"),
                   "extracted": ("extracted", lambda s: 100 * float(s.astype(float).mean()))}))
    out["paper: drop (mean)"] = [claims.value(PAPER, DROP_CLAIMS[i]) if i in DROP_CLAIMS else np.nan
                                 for i in out.index]
    return out.rename_axis(["network", "|K|"])


MARKING_UNITS = {"markings": "count", "not stitched": "count", "epochs (median)": "count",
                 "drop (median)": "points", "drop (mean)": "points", "extracted": "%",
                 "paper: drop (mean)": "points"}


def false_positive_table(fp: pd.DataFrame, nets=NETS) -> pd.DataFrame:
    """Fig. 6 in numbers: per (ε, network), unmarked models tested, false positives, fewest and
    median mismatches; the paper's statement for that ε (some / none / —)."""
    rows = []
    for (eps, net), g in fp.groupby(["eps", "net"], sort=False):
        tested = g[g.model.notna()]
        cid = FP_CLAIMS.get(eps)
        paper = "—" if cid is None else ("none" if claims.get(PAPER, cid).value == 0 else "some")
        rows.append({"ε": eps, "network": net, "models": len(tested),
                     "false positives": float(tested.false_positive.sum()) if len(tested) else np.nan,
                     "fewest mismatches": float(tested.mismatches.min()) if len(tested) else np.nan,
                     "median mismatches": float(tested.mismatches.median()) if len(tested) else np.nan,
                     "paper (Fig. 6)": paper})
    return pd.DataFrame(rows).set_index(["ε", "network"])


def false_positive_finding(fp: pd.DataFrame) -> str:
    """Fig. 6 in words, from the measurements: per ε, how many unmarked models answered the key well
    enough to be claimed (and which networks), against the paper's statement for that ε."""
    parts = []
    for eps, g in fp[fp.model.notna()].groupby("eps", sort=False):
        hit = g[g.false_positive.astype(bool)]
        cid = FP_CLAIMS.get(eps)
        paper = "" if cid is None else (" (the paper: none)" if claims.get(PAPER, cid).value == 0
                                        else " (the paper: some)")
        nets = f": {', '.join(dict.fromkeys(hit.net))}" if len(hit) else ""
        parts.append(f"at ε = {eps}, {len(hit)} of {len(g)}{nets}{paper}")
    if not parts:
        return "No unmarked model was tested (no key could be made)."
    return "False positives (an unmarked model claimed): " + "; ".join(parts) + "."


def overwrite_finding(ours: pd.DataFrame, paper: pd.DataFrame) -> str:
    """Table 3 in words, from the measurements: which networks our overwriting leaves below the
    accuracy a plausible attack keeps (§4.4), against the paper's attack, and so how our Table 3
    reads beside the paper's (a stronger attack, or like for like)."""
    if not len(ours):
        return "No marking was overwritten (no key could be made)."
    line = plausible_accuracy()
    below = [n for n in ours.index if not bool(ours.loc[n, "plausible"])]
    theirs = f"the paper's attack keeps {span(paper['accuracy after'], '.0f', ' %')}"
    if below:
        return (f"Overwriting costs {', '.join(below)} more accuracy than a plausible attack may (below {line:g} %: "
                f"lowest {ours.loc[below, 'accuracy after'].min():.1f} %), where {theirs}: read our Table 3 as a "
                f"stronger, less plausible attack than the paper's.")
    return (f"Overwriting keeps every network at or above the {line:g} % a plausible attack keeps "
            f"({span(ours['accuracy after'], '.1f', ' %')}), as {theirs}: our Table 3 compares like for like.")


FP_UNITS = {"models": "count", "false positives": "count", "fewest mismatches": "count",
            "median mismatches": "count"}


def pruning_order(pruning: pd.DataFrame, at_most: float) -> tuple[float | None, dict, bool]:
    """The paper's ordering in Table 1: at the largest rate ≤ ``at_most`` common to every network,
    the CNN loses the fewest key elements. Returns (that rate or None, removed by network, holds)."""
    nets = list(dict.fromkeys(pruning.index.get_level_values(0)))
    if not nets:
        return None, {}, False
    common = sorted(set.intersection(*(set(pruning.loc[n].index) for n in nets)))
    rates = [r for r in common if r <= at_most]
    if not rates:
        return None, {}, False
    rate = max(rates)
    removed = {n: float(pruning.loc[(n, rate), "key elements removed"]) for n in nets}
    holds = "CNN" in removed and removed["CNN"] <= min(removed.values())
    return rate, removed, bool(holds)


def compute_minutes(models: list[Trained], *tables: pd.DataFrame) -> float:
    """Training time of every model used (what a run with an empty cache costs), in minutes."""
    seconds = sum(m.record.get("seconds", 0) for m in models)
    seconds += sum(float(t["seconds"].sum()) for t in tables if len(t))
    return seconds / 60


__all__ = ["ATTACKS", "Data", "Experiment", "Lemerrer", "NETS", "Net", "SETTINGS", "Targets",
           "claim_id", "compute_minutes", "false_positive_table", "marking_summary", "paper_table",
           "plausible_accuracy", "pruning_order", "robustness_table", "split", "zero_cost"]
