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
# # Tartaglione et al. 2020: a watermark in a steep valley of the loss
#
# *Delving in the loss landscape to embed robust watermarks into neural networks* (Tartaglione,
# Grangetto, Cavagnino, Botta, ICPR 2020).
#
# A **white-box** watermark: the owner writes a payload of 3,306 values into as many weights
# chosen at random over every parameter tensor (the **key** is the list of positions) and trains
# the rest of the network around them. Extraction reads the key positions back and scores their
# **Pearson correlation** with the payload; an unwatermarked model gives a correlation near 0, so
# a p-value says how unlikely the reading is by chance. The *naive* embedding Γ₀ only freezes the
# key weights; the *robust* embedding also trains against replicas with noise on the key weights,
# so that they sit at the bottom of a **steep valley** of the loss: moving them (to erase the
# watermark) should cost accuracy, and fine-tuning or quantisation should not wash the watermark out.
#
# This page regenerates the poster's panels (e)–(j) — correlation and accuracy against
# fine-tuning epochs and against quantisation bits, naive against robust — and measures the valley
# directly and an attacker who knows the scheme but not the key. The poster gives no number: its
# claims are statements in `claims/tartaglione2020.yaml`.

# %% tags=["parameters", "remove-cell"]
dataset = "mnist"        # mnist | cifar10
profile = "smoke"        # smoke | cpu | paper
seed = 0
tiny = False             # the profile's models and steps at a size that runs in seconds
results_dir = None       # where the results record goes (None: build/results)
progress = False         # tqdm bars inside the notebook

# %% tags=["remove-cell"]
import matplotlib.pyplot as plt
import numpy as np
from myst_nb import glue

from wmlib import attacks, cli, data, keys, papers, report, results, zerocost
from wmlib.device import default_device
from wmlib.papers import tartaglione2020 as tg
from wmlib.schemes import weights
from wmlib.settings import Checks

P = papers.settings("tartaglione2020", profile, dataset)
if tiny:
    P = P.tiny()
claim_profile = "smoke" if tiny else profile     # a tiny run, like smoke, claims nothing
info = data.dataset_info(dataset)
device = default_device()
split = data.splits(dataset, n_train=P.n_train, n_attack=P.n_attack, n_test=P.n_test)
plt.rcParams.update({"figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.3})

# %% [markdown]
# ## Settings

# %%
banner = tg.banner(P, dataset, profile, split, device.type, tiny)
glue("banner", banner, display=False)
glue("profile", profile, display=False)
print(banner)
P.table()

# %% [markdown]
# ## The payload and the key
#
# A seeded sequence of 3,306 values uniform in [−1, 1] stands in for the authors' 38×29 RGB logo
# (any sequence of that length is a faithful payload), divided by the scale factor SF. The key
# draws 3,306 distinct positions uniformly over the flattened model — every tensor, biases,
# batch-norm affine and the output layer included, each in proportion to its size.

# %%
owners = tg.train_models(P, dataset, seed=seed, progress=progress)
key_table = report.tidy(tg.key_table(owners), {"tensors": "count", "parameters": "count", "key positions": "count",
                                                "share of the parameters": "%"})
glue("key", key_table)
key_table

# %% [markdown]
# ## Embedding: unwatermarked, naive Γ₀ and robust
#
# Three networks per model, trained alike from the same initialisation: without a watermark,
# with the key weights frozen at the payload (naive), and with the robust step (replicas). The
# correlation is read from each; the unwatermarked network, read with the same key, is the null
# that the p-value refers to. A model is claimed when p ≤ 10⁻⁶.

# %%
functionality_raw = tg.functionality_table(owners, split.eval)
checks = Checks(profile, P.targets)
tg.add_checks(checks, owners, functionality_raw)
functionality = report.tidy(functionality_raw, {"test accuracy": "%", "correlation": "correlation",
                                                "p-value": "p", "training (min)": "minutes"})
functionality.columns.name = f"ours at profile {profile}"
glue("functionality", functionality)

# %% [markdown]
# ## Fine-tuning: panels (e), (g), (i)
#
# The attacker fine-tunes **all** weights — the key positions too, since it does not know them —
# on half of the test set (images the owner never used) at a constant learning rate, with
# momentum 0.9 and weight decay 5·10⁻⁴; test accuracy on the other half. Epoch 0 is the
# watermarked model.

# %%
ft = tg.fine_tuning(P, owners, split, augment=info.augment, seed=seed, progress=progress)
fig, axes = plt.subplots(2, len(P.models) * 2, figsize=(4.2 * len(P.models) * 2, 6), squeeze=False, sharex=True)
for j, (m, lr) in enumerate((m, lr) for m in ft.model.unique() for lr in P.ft_lrs):
    for emb, g in ft[(ft.model == m) & (ft.lr == lr)].groupby("embedding"):
        axes[0, j].plot(g.epoch, g.correlation, label=emb, **tg.style(emb))
        axes[1, j].plot(g.epoch, g.accuracy, label=emb, **tg.style(emb))
    axes[0, j].set(title=f"{m}, fine-tuning at lr {lr:g}", ylabel="correlation")
    axes[0, j].axhline(weights.threshold(P.positions), color="grey", ls=":", label="claim threshold")
    axes[1, j].set(xlabel="fine-tuning epoch", ylabel="test accuracy (%)")
axes[0, 0].legend(fontsize=8)
fig.tight_layout()
glue("fig_finetune", fig)
plt.close(fig)
last = ft[ft.epoch == ft.epoch.max()].set_index(["model", "embedding", "lr"])[["correlation", "accuracy"]]
ft_table = report.tidy(last, {"correlation": "correlation", "accuracy": "%"})
ft_table.columns.name = f"after {int(ft.epoch.max())} epochs, profile {profile}"
glue("finetune", ft_table)

# %% [markdown]
# ## Quantisation and pruning: panels (f), (h), (j)
#
# Every parameter tensor snapped to 2^b evenly spaced levels between its own minimum and maximum
# (b = 8 … 2), and global magnitude pruning of the weight matrices and kernels. The key weights
# are the largest of their tensors (they set the quantisation range, and pruning removes the
# smallest weights first), which is why the correlation survives both.

# %%
compression = tg.compression_table(P, owners, split.eval)
fig, axes = plt.subplots(2, 2 * len(P.models), figsize=(4.2 * 2 * len(P.models), 6), squeeze=False)
for j, (m, attack) in enumerate((m, a) for m in compression.model.unique() for a in ("quantisation", "pruning")):
    sel = compression[(compression.model == m) & (compression.attack == attack)]
    for emb, g in sel.groupby("embedding"):
        axes[0, j].plot(g.level, g.correlation, label=emb, **tg.style(emb))
        axes[1, j].plot(g.level, g.accuracy, label=emb, **tg.style(emb))
    axes[0, j].set(title=f"{m}, {attack}", ylabel="correlation")
    axes[1, j].set(xlabel="bits" if attack == "quantisation" else "fraction pruned", ylabel="test accuracy (%)")
    if attack == "quantisation":
        for ax in axes[:, j]:
            ax.invert_xaxis()
axes[0, 0].legend(fontsize=8)
fig.tight_layout()
glue("fig_compression", fig)
plt.close(fig)
comp = compression.set_index(["model", "attack", "embedding", "level"])
comp_table = report.tidy(comp, {"correlation": "correlation", "accuracy": "%"})
comp_table.columns.name = f"ours at profile {profile}"
glue("compression", comp_table)

# %% [markdown]
# ## The steep valley: what moving the watermarked weights costs
#
# The poster's mechanism, measured by an oracle who knows the key: Gaussian noise on the key
# positions only, in units of the payload's standard deviation, and the key weights set to zero.
# The correlation falls the same way for both embeddings (it depends on the noise alone); the
# question is how much accuracy each loses. The poster claims the robust embedding loses more.

# %%
valley = tg.valley_table(P, owners, split.eval, seed=seed)
fig, axes = plt.subplots(1, len(P.models), figsize=(5 * len(P.models), 3.4), squeeze=False)
for ax, m in zip(axes[0], valley.model.unique()):
    for emb, g in valley[(valley.model == m) & np.isfinite(valley.noise)].groupby("embedding"):
        ax.plot(g.noise, g["accuracy lost"], label=emb, **tg.style(emb))
    ax.set(xscale="log", xlabel="noise on the key weights (× payload std)", ylabel="test accuracy lost (points)",
           title=f"{m}: the valley around the key weights")
    ax.legend(fontsize=8)
fig.tight_layout()
glue("fig_valley", fig)
plt.close(fig)
val = valley.set_index(["model", "embedding", "key weights"]).drop(columns="noise")
valley_tab = report.tidy(val, {"correlation": "correlation", "accuracy lost": "points"})
valley_tab.columns.name = f"ours at profile {profile}"
glue("valley", valley_tab)

# %% [markdown]
# ## An attacker who knows the scheme but not the key
#
# The payload divided by SF gives key weights far larger than trained weights. Our informed
# attacker scores every parameter by its robust z-score in its tensor (distance to the median in
# units of the median absolute deviation), re-draws the highest-scoring fraction from the
# tensor's own distribution, then fine-tunes briefly to repair the accuracy. The table gives what
# it costs, right after the reset and after the repair, and whether the owner can still claim.

# %%
informed_raw = tg.informed_attack(P, owners, split, augment=info.augment, seed=seed, progress=progress)
informed = report.tidy(informed_raw.set_index(["model", "embedding", "fraction reset"]),
                       {"correlation": "correlation", "accuracy lost": "points",
                        "correlation, repaired": "correlation", "accuracy lost, repaired": "points"})
informed.columns.name = f"ours at profile {profile}"
glue("informed", informed)
# what the page's "What we find" says, computed from the tables above
for what, sentence in tg.findings(P, functionality_raw, ft, compression, valley, informed_raw).items():
    glue(f"finding_{what}", sentence, display=False)

# %% [markdown]
# ## Zero-cost edits: the file changed, not one prediction
#
# A thief can edit the file without changing what the network computes: reorder the units of a
# layer (and the next layer's inputs with them), rescale each unit by a positive factor across
# its ReLU, or pad a layer with dummy units whose outgoing weights are zero, cancel or split a
# copy. The key is a list of positions, so each edit moves the payload away from them. The table
# applies each edit to the robust embedding's file and reads it twice: as the poster extracts
# (the key positions of the file as it is) and after aligning it to the owner's file
# (`wmlib.align`: dummy units removed, scales undone, units matched by linear assignment on the
# weights, the key positions left out). Everywhere else on this page extraction aligns first.
# Aligning an unrelated model pulls its weights towards the owner's, and the values at the key
# positions follow what the matching sees (matched on every weight, the payload itself is
# copied). So the aligned reading is checked against networks that never saw the payload — the
# unwatermarked one and others trained alike at other seeds — aligned the same way: its
# threshold is the paper's (p = 10⁻⁶) or, if higher, a one-sided Student-t prediction bound at
# α = 0.01 over them, each network left out of its own calibration. The second table reads them
# both ways.
# A smoke run applies only a permutation and the batch-norm rescaling (`zerocost.SMOKE_EDITS`).

# %%
zc_only = zerocost.SMOKE_EDITS if claim_profile == "smoke" else None     # smoke and tiny: two edits, not all
zc_raw, zc_null_raw = tg.zero_cost(owners, split.eval, seed=seed, only=zc_only)
glue("zerocost_finding", " ".join(zerocost.finding(zc_raw.xs(m), zc_null_raw.xs(m)) for m in zc_raw.index.unique(0)),
     display=False)
glue("zerocost", zerocost.tidy(zc_raw, "correlation"))
glue("zerocost_null", zerocost.tidy(zc_null_raw, "correlation"))
for m in zc_raw.index.unique(0):
    zerocost.add_checks(checks, zc_raw.xs(m), f"{m}: ")
    zerocost.add_null_checks(checks, zc_null_raw.xs(m), f"{m}: ")

# %% [markdown]
# ## The poster's claims
#
# One row per claim of the poster for this dataset: ours is the robust embedding minus the naive
# one, and whether the claim holds as stated.

# %%
claim_rows = tg.claim_rows(dataset, P, functionality_raw, ft, compression, valley, claim_profile)
extra_rows = tg.informed_rows(informed_raw)
claims_table = report.comparison(claim_rows + extra_rows, profile).drop(columns=["paper", "gap"], errors="ignore")
glue("claims", claims_table)

# %% [markdown]
# ## Verify a suspect file with `wmbook`
#
# The owner's key as the command line reads it (`wmlib.keys`: the key positions, the payload, the
# owner's file for alignment and the aligned correlations of independent models that calibrate its
# threshold and a manifest with its digest), and `wmbook verify` run on three files as a user would:
# the owner's robust embedding, a **stolen** copy (all layers fine-tuned for one epoch at a tenth of
# the owner's training rate on the attacker's images, then every zero-cost edit: dummy units,
# rescaling, permutation) and a never-watermarked model trained alike at another seed (left out of the
# threshold's calibration). The [Verify a model](../../book/verify.md) page explains the command, the
# key files and the exit status.

# %%
vo = next(iter(owners.values()))
v_null = vo.null("robust")
v_ind = list(vo.others)[-1]                 # held out of the calibration: the independent suspect
verify_table, verify_session = cli.rehearse(
    results.keys_path("tartaglione2020", dataset, profile, results_dir, seed),
    keys.tartaglione_key(vo.key, vo.values, vo.robust.model, dataset=dataset, architecture=P.network(vo.model),
                         null=[c for name, c in v_null.items() if name != v_ind]),
    {"owner": vo.robust.model, "stolen": attacks.steal(vo.robust, split.attack, lr=P.lr / 10, seed=seed).model,
     "independent": vo.others[v_ind].model}, seed=seed)
glue("verify_session", report.console(verify_session))
glue("verify_finding", cli.rehearsal_finding(verify_table), display=False)
cli.rehearsal_checks(checks, verify_table, asserted=profile != "smoke" and not tiny)

# %% [markdown]
# ## Checks

# %%
glue("checks", checks.table())
checks.assert_all()
print("all checks passed at profile", profile)

# %% [markdown]
# ## Results record

# %%
used = [t for o in owners.values() for t in (*o.others.values(), *o.embedded().values())]   # the null's models too
compute_minutes = sum(t.record["seconds"] for t in used) / 60
path = results.write("tartaglione2020", dataset, profile, claim_rows + extra_rows, seed=seed,
                     compute_minutes=compute_minutes, folder=results_dir)
print(f"training time of the models used (empty cache): {compute_minutes:.1f} min")
print("wrote", path)
