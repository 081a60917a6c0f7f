# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Bansal et al. 2022: certified watermarks with randomized smoothing
#
# *Certified Neural Network Watermarks with Randomized Smoothing* (Bansal, Chiang, Schwarzschild,
# Saha, Goldblum, Goldstein, ICML 2022).
#
# A **trigger set** of 100 images, all labelled class 4, is trained into the owner's model (a
# same-target backdoor). The watermark is **certified** by smoothing the *trigger accuracy* over
# Gaussian noise on the model's weights: the median over ε ~ N(0, σ²I) of the trigger accuracy
# of θ + ε. Percentile smoothing (Chiang et al. 2020) bounds that median at every model within
# ℓ2 distance R of θ by an order statistic of m sampled accuracies: the **certified trigger
# accuracy**. Embedding trains under a **noise curriculum** (σ_j = σ·j/levels) so that noisy
# models keep the triggers. The paper claims:
#
# 1. certified trigger accuracy of 100 % at small radii, falling to 0 by R ≈ 1–1.2 (σ = 1);
# 2. an ℓ2 adversary moving the weights by at most R keeps a high *worst-case* trigger accuracy;
# 3. after fine-tuning and distillation, the smoothed (white-box) verification keeps the watermark
#    where the plain (black-box) query and an uncertified baseline watermark lose it.
#
# This page regenerates each of them with `wmlib`; radii are in units of σ (the paper's σ = 1).

# %% tags=["parameters", "remove-cell"]
dataset = "mnist"        # mnist | cifar10 | cifar100 (paper profile, with its data)
profile = "smoke"        # smoke | cpu | paper
seed = 0
tiny = False             # the profile's models and steps at a size that runs in seconds (tests)
results_dir = None       # where the results record goes (None: build/results)
progress = False         # tqdm bars inside the notebook

# %% tags=["remove-cell"]
import time

import matplotlib.pyplot as plt
import numpy as np
from myst_nb import glue

from wmlib import attacks, cli, data, keys, papers, report, results, zerocost
from wmlib.device import default_device
from wmlib.papers import bansal2022 as bs
from wmlib.settings import Checks

PAPER = "bansal2022"
t_start = time.time()
P = papers.settings(PAPER, profile, dataset)
if tiny:
    P = P.tiny()
claim_profile = "smoke" if tiny else profile     # a tiny run, like smoke, claims nothing
run_name = f"{profile}{' (tiny)' if tiny else ''}"
info = data.dataset_info(dataset)
device = default_device()
test = data.splits(dataset, n_test=P.n_test).test
attacker = bs.attacker_data(dataset, P.n_attack)
val = attacker
plt.rcParams.update({"figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.3})
STYLE = {"baseline": dict(color="tab:gray", ls="--", marker="s"), "certified": dict(color="tab:blue", marker="o")}

# %% [markdown]
# ## Settings

# %%
banner = bs.banner(P, dataset, profile, len(attacker), device.type, tiny)
glue("banner", banner, display=False)
print(banner)
P.table()

# %% [markdown]
# ## The three trigger sets
#
# Made from the first 100 training images (which the owner trains on), all labelled 4:
# *embedded content* (the word "Adobe", grey 155, DejaVu Sans at 10 points — the authors draw
# Verdana), *noise* (one fixed N(0, 1) pattern added in [0, 1] space, clipped), *unrelated*
# (images of the other dataset: CIFAR-10 in grey for MNIST, MNIST on three channels for CIFAR-10).

# %%
trig = bs.triggers(P, dataset, seed=seed)
fig, axes = plt.subplots(len(trig), 6, figsize=(7, 1.25 * len(trig)), squeeze=False)
for row, (kind, t) in zip(axes, trig.items()):
    for j, ax in enumerate(row):
        img = t.x[j].permute(1, 2, 0).numpy()
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255)
        ax.set_xticks([]), ax.set_yticks([])
    row[0].set_ylabel(kind, rotation=0, ha="right", va="center", fontsize=8)
fig.tight_layout()
glue("fig_triggers", fig)
plt.close(fig)

# %% [markdown]
# ## The owner's models
#
# Per trigger kind, the *baseline* watermark (the authors' `--simple`: triggers in training, no
# noise) and the *certified* one (the same plus the noise curriculum up to σ). Test accuracy,
# trigger accuracy queried plainly, training time.

# %%
models = bs.train_models(P, dataset, trig, seed=seed, progress=progress)
acc = bs.certificates(P, models, trig, seed=seed)
owners_raw = bs.owners_table(models, trig, test)
owners = report.tidy(owners_raw, {"test accuracy": "%", "trigger accuracy": "%", "training (min)": "minutes"})
owners.columns.name = f"ours at profile {run_name}"
glue("owners", owners)
owners

# %% [markdown]
# ## How far the curriculum gets: the σ study
#
# The paper certifies at σ = 1 on every parameter of a ResNet-18. Our CPU model (three stages of
# conv–batch-norm–ReLU, 0.29 M parameters) is trained with the curriculum to each σ of the study
# on the embedded-content triggers; its certificate noises the whole model file (batch-norm
# statistics included). The profile's σ was chosen as the largest that kept test accuracy within
# the budget of the baseline when the profile was set; the sentence under the table says whether
# this run's study agrees.

# %%
study_raw = bs.sigma_study(P, dataset, trig, models[P.study_kind]["baseline"], test, seed=seed, progress=progress)
study = report.tidy(study_raw.drop(columns=["seconds", "largest R ≥ 50 %", "training (min)"]),
                    {"test accuracy": "%", "drop from baseline": "points", "trigger accuracy": "%",
                     "smoothed (median)": "%", "certified at 0.2σ": "%", "certified at σ": "%",
                     "largest R/σ ≥ 50 %": "R/σ"})
study.columns.name = f"profile {run_name}"
glue("sigma_study", study)
study

# %% [markdown]
# ## Certified trigger accuracy
#
# m noisy models at σ, each scored on all 100 triggers (the authors' loader scores 64); the
# certified accuracy at R is the order statistic of Chiang et al. at confidence 0.99. The paper's
# numbers (σ = 1, R/σ = R) beside ours at the same R/σ.

# %%
cert_raw = bs.certified_table(P, acc)
cert = report.tidy(cert_raw.drop(columns="draws"), {"median": "%", **{c: "%" for c in cert_raw.columns[2:]}})
cert.columns.name = f"R/σ → ({run_name})"
glue("certified", cert)
verdicts = report.tidy(bs.verdict_table(P, acc), {"smoothed (median)": "%", "threshold": "%",
                                                   "certified radius (R/σ)": "R/σ"})
verdicts.columns.name = f"verdicts at profile {run_name}"
glue("verdicts", verdicts)
paper_cert = bs.paper_certified(dataset, P, cert_raw)
glue("certified_vs_paper", report.tidy(paper_cert, default_unit="%"))
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
for (kind, emb), a in acc.items():
    curve = bs.certified_curve(P, a)
    kw = dict(STYLE[emb], label=f"{kind}, {emb}", alpha=0.9)
    kw["color"] = {"embedded content": "tab:blue", "noise": "tab:green", "unrelated": "tab:red"}[kind]
    for ax, x in zip(axes, (np.array(bs.RADII), P.sigma * np.array(bs.RADII))):
        ax.plot(x, curve, **kw)
for ax, xl in zip(axes, ("R/σ", "R (ℓ2, whole model file)")):
    ax.set(xlabel=xl, ylabel="certified trigger accuracy (%)", ylim=(-3, 103))
if not paper_cert.empty:
    axes[0].plot(bs.PAPER_RADII, paper_cert.filter(like="paper").mean().to_numpy(float), "k:",
                 label="slides (σ = 1), mean of kinds")
axes[0].legend(fontsize=7)
axes[1].set_title(f"σ = {P.sigma:g}")
fig.tight_layout()
glue("fig_certified", fig)
plt.close(fig)

# %% [markdown]
# ## The ℓ2 adversary (worst case)
#
# PGD on every coordinate of the model file within ‖δ‖₂ ≤ R, minimising the triggers' margin
# while keeping the attacker's cross-entropy low, against the baseline and the certified
# watermark (embedded content). Trigger accuracy queried plainly (the paper's worst case) and
# smoothed (median of fresh draws), beside the certificate at R.

# %%
kind = P.attack_kind
adversary_raw = bs.adversary_table(P, models[kind], trig[kind], val, test, acc[kind, "certified"], seed=seed)
adv = adversary_raw.set_index(["R/σ", "embedding"]).drop(columns="seconds")
adversary = report.tidy(adv, {"R": "ℓ2", "trigger accuracy": "%", "smoothed (median)": "%", "certified": "%",
                              "test accuracy": "%", "ℓ2 moved": "ℓ2"})
adversary.columns.name = f"ours at profile {run_name}"
glue("adversary", adversary)
fig, ax = plt.subplots(figsize=(6, 3.4))
for emb, g in adversary_raw.groupby("embedding"):
    ax.plot(g["R/σ"], g["trigger accuracy"], label=f"{emb}: plain", **STYLE[emb])
    ax.plot(g["R/σ"], g["smoothed (median)"], label=f"{emb}: smoothed", alpha=0.6, **dict(STYLE[emb], ls=":"))
c = adversary_raw[adversary_raw.embedding == "certified"]
ax.plot(c["R/σ"], c["certified"], "k-", lw=2, label="certificate")
if dataset == "cifar10":
    ax.plot(bs.ADVERSARY_RADII, bs.paper_worst_case(), "r^", label="slides' worst case (σ = 1)")
ax.set(xlabel="attack radius R/σ", ylabel="trigger accuracy (%)", ylim=(-3, 103), title=f"{kind}, σ = {P.sigma:g}")
ax.legend(fontsize=7)
fig.tight_layout()
glue("fig_adversary", fig)
plt.close(fig)

# %% [markdown]
# ## Removal attacks: fine-tuning and distillation
#
# The student starts from the watermarked weights and trains with Adam on the attacker's half of
# the training set. Black-box: the triggers queried plainly; white-box: the mean and median of
# 100 noisy copies at σ (the certified verification), drawn around the attacked file aligned to
# its owner's (a thief may also permute or rescale units at no cost), with the paper's reading of
# the file as it is beside.

# %%
removals_raw = bs.attack_table(P, models[kind], trig[kind], attacker, test, augment=info.augment, seed=seed,
                               progress=progress)
removals = report.tidy(removals_raw.set_index(["attack", "lr", "embedding"]).drop(columns=["seconds", "aligned", "white-box (mean)"])
                       .rename(columns={"white-box (median), the paper's reading": "as read"}),
                       {"test accuracy": "%", "black-box": "%", "white-box (median)": "%", "as read": "%", "ℓ2 whole file": "ℓ2", "ℓ2 parameters": "ℓ2"})
removals.columns.name = f"ours at profile {run_name}"
glue("removals", removals)
glue("removals_vs_paper", report.tidy(bs.paper_removals(dataset, removals_raw), default_unit="%"))

# %% [markdown]
# ## Soundness: an adaptive attacker against the certificate
#
# PGD on the *smoothed* trigger accuracy (the margin loss averaged over noise draws at σ) within
# R, on every coordinate of the file. The certificate is violated if the median of fresh draws of
# the attacked model falls below the certified trigger accuracy at the distance it moved.

# %%
sound_raw = bs.soundness(P, models[kind]["certified"], trig[kind], val, acc[kind, "certified"], seed=seed)
sound = report.tidy(sound_raw.drop(columns="seconds"), {"ℓ2 moved": "ℓ2", "trigger accuracy": "%", "smoothed (median), fresh draws": "%",
                                "certified at that distance": "%"})
sound.columns.name = f"ours at profile {run_name}"
glue("soundness", sound)
# what the page's "What we find" says, computed from the tables above
for what, sentence in bs.findings(P, study_raw, cert_raw, adversary_raw, removals_raw, sound_raw).items():
    glue(f"finding_{what}", sentence, display=False)
sound

# %% [markdown]
# ## Zero-cost edits: the file changed, not one prediction
#
# A thief can edit the file without changing what the network computes: reorder the units of a
# layer, rescale each unit by a positive factor across its ReLU, rescale a convolution into its
# batch norm, or pad a layer with dummy units. Not one prediction changes, but the certified
# verification draws noise of a fixed σ on the file: shrinking a layer's weights tenfold makes the
# same σ ten times larger relative to them. The table applies each edit to the certified
# watermark of the study's trigger kind and verifies it as the paper does (the file as it is) and
# with the suspect aligned to the owner's file first (`owner=`), so that the certificate then
# covers every file whose aligned form lies within R of the owner's.
# Alignment must not manufacture a match: the second table reads never-watermarked models
# (`n_independent`, trained as the owner's without triggers at the next seeds) on the study's
# trigger set, as they are and aligned to the owner's file.
# A smoke run applies only a permutation and the batch-norm rescaling (`zerocost.SMOKE_EDITS`).

# %%
zc_only = zerocost.SMOKE_EDITS if claim_profile == "smoke" else None     # smoke: two edits, not all
zc_raw = bs.zero_cost(P, models, trig, test, seed=seed, only=zc_only)
zc_null_raw = bs.zero_cost_null(P, models, trig, bs.independents(P, dataset, seed=seed, progress=progress), seed=seed)
glue("zerocost_finding", zerocost.finding(zc_raw, zc_null_raw), display=False)
zc_table = zerocost.tidy(zc_raw, "rate")
glue("zerocost", zc_table)
glue("zerocost_null", zerocost.tidy(zc_null_raw, "rate"))

# %% [markdown]
# ## The paper's numbers beside ours

# %%
claim_rows = bs.claim_rows(dataset, P, cert_raw, adversary_raw, removals_raw, claim_profile)
extra = bs.extra_rows(P, study_raw, sound_raw)
claims_table = report.comparison(claim_rows + extra, run_name)
glue("claims", claims_table)

# %% [markdown]
# ## Verify a suspect file with `wmbook`
#
# The owner's key as the command line reads it (`wmlib.keys`: the trigger set of the kind the zero-
# cost edits study, σ, m, the threshold, the radius grid and the owner's file for alignment and a
# manifest with its digest), and `wmbook verify` run on three files as a user would: the owner's
# certified model, a **stolen** copy (all layers fine-tuned for one epoch at a tenth of the owner's
# training rate on the attacker's images, then every zero-cost edit: dummy units, rescaling,
# permutation) and a model trained alike without triggers at another seed. The [Verify a
# model](../../book/verify.md) page explains the command, the key files and the exit status.

# %%
verify_table, verify_session = cli.rehearse(
    results.keys_path("bansal2022", dataset, profile, results_dir, seed),
    keys.bansal_key(trig[P.study_kind], models[P.study_kind]["certified"].model, dataset=dataset, architecture=P.model,
                    sigma=P.sigma, m=P.m_check, threshold=P.claim_accuracy, radii=P.sigma * np.asarray(bs.RADII),
                    confidence=P.confidence),
    {"owner": models[P.study_kind]["certified"].model,
     "stolen": attacks.steal(models[P.study_kind]["certified"], attacker, lr=P.lr / 10, seed=seed).model,
     "independent": next(iter(bs.independents(P, dataset, seed=seed, progress=progress).values())).model}, seed=seed)
glue("verify_session", report.console(verify_session))
glue("verify_finding", cli.rehearsal_finding(verify_table), display=False)

# %% [markdown]
# ## Checks

# %%
checks = Checks(profile, P.targets)
cli.rehearsal_checks(checks, verify_table, asserted=profile != "smoke" and not tiny)
bs.add_checks(checks, P, models, test, cert_raw, study_raw, adversary_raw, removals_raw, sound_raw)
zerocost.add_checks(checks, zc_raw)
zerocost.add_null_checks(checks, zc_null_raw, read_target="max_null_claims")
glue("checks", checks.table())
checks.assert_all()
print("all checks passed at profile", profile)

# %% [markdown]
# ## Results record

# %%
compute_minutes = bs.compute_seconds(P, models, trig, [study_raw, adversary_raw, removals_raw, sound_raw],
                                     seed=seed) / 60
path = results.write(PAPER, dataset, profile, claim_rows + extra, seed=seed, compute_minutes=compute_minutes,
                     folder=results_dir)
print(f"compute of the models, attacks and draws used (empty cache): {compute_minutes:.1f} min; "
      f"this run: {(time.time() - t_start) / 60:.1f} min")
print("wrote", path)
