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
# # Jiang, Fang, Gong 2023: IPCert, certified IP protection by majority-vote smoothing
#
# *IPCert: Provably Robust Intellectual Property Protection for Machine Learning* (Jiang, Fang,
# Gong, ICCV Workshops 2023).
#
# A watermark (Adi et al.'s trigger set) or a fingerprint (IPGuard points near the decision
# boundary) protects a model through an **IP set** of n points with IP labels; the owner claims a
# suspect model when its **matching rate** (MR, the fraction of IP points it labels as the IP
# labels) is high. The paper claims:
#
# 1. **Existing methods break under small worst-case changes** (§3, Fig. 1): projected gradient
#    descent on the weights (Alg. 1) drives MR to about 0 within an ℓ2 ball of radius R ≈ 2 on
#    CIFAR-10, far smaller than the ℓ2 drift of ordinary fine-tuning or distillation (≈ 15–18,
#    Table 2), after which MR is still high. Non-stolen models have low MR (Table 1).
# 2. **IPCert certifies MR** (§4): the owner classifies each IP point by a majority vote of m
#    copies of the model with Gaussian noise N(0, σ²I) on *every parameter*; each vote comes with a
#    certified radius (Eq. 5), so any post-processing that moves the weights by at most R keeps at
#    least the **certified matching rate** CMR(R) (Eq. 6).
# 3. **IPCert beats median smoothing** (MS, Bansal et al.): higher or equal CMR (Figs. 2, 5) and
#    higher smoothed MR after fine-tuning and distillation (Fig. 3), with the same low MR on
#    non-stolen models (Table 3).
# 4. **Training with noise** (watermark) and **robust selection** of fingerprints (Eq. 7) raise
#    CMR (Fig. 4); CMR grows slightly with α, grows with m, and σ has a best value (Figs. 6–7).
#
# This page regenerates each of them with `wmlib` (the numbers are computed when it runs).

# %% tags=["parameters", "remove-cell"]
dataset = "mnist"        # mnist | cifar10
profile = "smoke"        # smoke | cpu | paper
seed = 0
results_dir = None       # where the results record goes (None: build/results)
progress = False         # tqdm bars inside the notebook

# %% tags=["remove-cell"]
import time
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from myst_nb import glue

from wmlib import attacks, profiles, results
from wmlib import data as D
from wmlib.certify import matching_rate
from wmlib.device import default_device
from wmlib.models import count_parameters
from wmlib.report import comparison
from wmlib.results import Row
from wmlib.schemes import adi
from wmlib.schemes import ipcert as I
from wmlib.train import TrainConfig, accuracy, evaluate, train

t_start = time.time()
P = profiles.get("ipcert2023", profile, dataset)
E = P["expect"]
info = D.dataset_info(dataset)
device = default_device()
claims_tested = profile != "smoke"     # smoke trains for seconds: it reproduces nothing


def status(ours, paper, tolerance, holds):
    """:func:`wmlib.results.status`, except that the smoke profile reproduces nothing."""
    if not claims_tested:
        return "not in paper" if paper is None else "not yet"
    return results.status(ours, paper, tolerance, holds)


plt.rcParams.update({"figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.3})
COLORS = {"IPCert": "tab:blue", "MS": "tab:orange"}

# %% [markdown]
# ## Settings
#
# The paper splits the training set in halves: the owner trains the target model (and the
# non-stolen models) on one, the attacker post-processes with the other. Here the owner's half is
# the first `n_train` images of the fixed shuffled training set and the attacker's data are the
# images after it (`wmlib.schemes.ipcert.attacker_data`; the `cpu` profile uses a part of that
# half). The PGD's validation set D_v is taken from the test set, and every test accuracy is
# measured on the rest of it, as in §3.2.

# %%
split = D.splits(dataset, n_train=P["n_train"], n_test=P["n_test"])
owner = split.train
post_data = I.attacker_data(dataset, len(owner), P["n_post"])
val = split.test.head(P["n_val"])
evalset = split.test.subset(torch.arange(P["n_val"], len(split.test)))
trigger = adi.authors_trigger(dataset, P["trigger_preprocess"])

cfg = TrainConfig(model=P["model"], dataset=dataset, epochs=P["epochs"], lr=P["lr"],
                  schedule=P["schedule"], batch_size=P["batch_size"],
                  weight_decay=P["weight_decay"], n_train=P["n_train"], seed=seed)
banner = (f"Produced at profile {profile} on {dataset} ({device.type}); model {P['model']}, "
          f"{len(owner):,} owner images, {P['epochs']} epochs ({P['schedule']} lr {P['lr']}, batch "
          f"{P['batch_size']} + {P['trigger_per_batch']} trigger images); σ = {P['sigma_wm']} "
          f"(watermark) / {P['sigma_fp']} (fingerprint), α = {P['alpha']}, m = {P['m']:,} draws "
          f"({P['m_curve']:,} in sweeps, {P['m_mr']:,} where only an MR is read); PGD lr "
          f"{P['pgd_lr']}, {P['pgd_iters']} iterations, λ = {P['pgd_lam']}; {P['nonstolen']} "
          f"non-stolen models; fine-tuning / distillation {P['post_epochs']} epoch(s) on "
          f"{len(post_data):,} attacker images; accuracies on {len(evalset):,} test images.")
glue("banner", banner, display=False)
print(banner)
settings = pd.Series({k: str(v) for k, v in P.items() if k != "expect"}, name="value").to_frame()
glue("settings", settings)

# %% [markdown]
# ## The target models and the two IP sets
#
# Three models are trained on the owner's half with the same configuration: a **clean** model
# (the fingerprinted target, and the reference for accuracy), the **watermarked** model of Adi et
# al. (FROMSCRATCH: trigger images in every batch; the target of §3), and the watermarked model
# **trained with noise** (§4.4, the target of §5): after each `noise_every`-th update, one more
# step on the trigger loss averaged over noisy copies θ + ε. The paper's Alg. 2 is in an appendix we
# do not have; we state our choices (draws, trigger images per noisy step, a gradient-norm clip,
# since a noisy model's gradient is far larger than a clean one's) in the settings above.
#
# **σ and the model.** The paper's σ = 1 on every parameter of a ResNet-18 is survivable because
# batch norm makes each convolution scale-invariant, so the weights can grow large relative to the
# noise over 100 epochs of noisy training. Our CPU CNN (with batch norm, 0.29 M parameters,
# ‖θ‖ ≈ 30) trained for a few epochs keeps its trigger set under σ = 0.03 and loses it at 0.1, so
# the `cpu` profile certifies the watermark at σ = 0.03; the σ sweep below shows the trade-off.
#
# The fingerprint is IPGuard's (Eq. 1, k = 5): `fp_n` points (100 in the paper) optimised from uniform noise to be
# classified as a random label j with a random runner-up i at a logit margin of k, labelled by the
# clean target's own predictions (so the target's MR is 1 by construction).

# %%
noise = I.NoiseTraining(trigger, P["sigma_wm"], draws=P["noise_draws"], every=P["noise_every"],
                        ip_batch=P["noise_ip_batch"], clip=P["noise_clip"])
clean = train(cfg, progress=progress)
wm_plain = I.watermark(cfg, trigger, per_batch=P["trigger_per_batch"], progress=progress)
wm_noise = I.watermark(cfg, trigger, noise=noise, per_batch=P["trigger_per_batch"], progress=progress)
fp = I.ipguard_fingerprints(clean, dataset, P["fp_n"], k=P["fp_k"], steps=P["fp_steps"],
                            lr=P["fp_lr"], seed=seed, progress=progress)
targets = {"clean (fingerprinted)": (clean, fp), "watermarked": (wm_plain, trigger),
           "watermarked, trained with noise": (wm_noise, trigger)}
target_table = pd.DataFrame([{
    "model": name, "test acc": evaluate(m, evalset),
    "IP set": "fingerprint" if ip is fp else "watermark",
    "MR on its IP set (no smoothing)": accuracy(m.model, ip.x, ip.y),
    "parameters": count_parameters(m.model),
    "‖θ‖₂": I.parameter_norm(m.model),
    "train minutes": m.record["seconds"] / 60} for name, (m, ip) in targets.items()]).set_index("model")
target_table.columns.name = f"ours ({profile}); the paper reports no target accuracy"
glue("targets", target_table.round(3))
fp_table = pd.Series({"points": len(fp), "k (logit margin)": P["fp_k"],
                      "Adam steps": P["fp_steps"],
                      "Eq. 1 loss, mean at start": float(fp.initial_loss.mean()),
                      "Eq. 1 loss, mean at end": float(fp.loss.mean()),
                      "points reaching loss 0": int((fp.loss == 0).sum()),
                      "points labelled j (target's label = intended j)": int((fp.y == fp.j).sum())},
                     name=f"ours ({profile}); the paper reports no fingerprint statistics").to_frame()
glue("fingerprints", fp_table)

# %% [markdown]
# ## §3: worst-case post-processing (Alg. 1, Fig. 1)
#
# PGD on a weight perturbation δ with ‖δ‖₂ ≤ R (one norm over all parameters) minimising
# −λ · (IP-set loss) + (validation loss). The paper uses lr 0.001 for 1,000 iterations; with
# plain gradient steps that rate barely moves a model that has memorised its IP set, so the `cpu`
# profile takes larger steps for fewer iterations (settings above). Targets without smoothing:
# the watermarked model (no noise training) and the clean model with its fingerprints. R = 0 is
# the target itself.

# %%
def pgd(base, ip, radius, lam=P["pgd_lam"]):
    return attacks.worst_case(base, ip, val, radius=radius, lam=lam, lr=P["pgd_lr"], iters=P["pgd_iters"],
                        val_batch=P["pgd_val_batch"], seed=seed)


pgd_rows = []
for kind, (base, ip) in {"watermark": (wm_plain, trigger), "fingerprint": (clean, fp)}.items():
    pgd_rows.append(dict(ip=kind, R=0.0, norm=0.0, MR=accuracy(base.model, ip.x, ip.y),
                         acc=evaluate(base, evalset), seconds=0.0))
    for r in P["pgd_radii"]:
        out = pgd(base, ip, r)
        pgd_rows.append(dict(ip=kind, R=r, norm=out.record["delta_norm"],
                             MR=accuracy(out.model, ip.x, ip.y), acc=evaluate(out, evalset),
                             seconds=out.record.get("seconds", 0.0)))
pgd_df = pd.DataFrame(pgd_rows)
pgd_table = pgd_df.pivot(index="R", columns="ip", values=["MR", "acc", "norm"]).round(3)
pgd_table.columns.names = [None, f"ours ({profile}); paper (Fig. 1, figure only): MR ≈ 0 at R = 2, CIFAR-10"]
glue("pgd", pgd_table)

fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharey=True)
for ax, kind in zip(axes, ("watermark", "fingerprint")):
    d = pgd_df[pgd_df.ip == kind]
    ax.plot(d.R, d.MR, "o-", label="MR")
    ax.plot(d.R, d.acc, "s--", label="test accuracy")
    ax.set(title=f"{kind} (no smoothing)", xlabel="perturbation bound R (ℓ2)", ylim=(-0.03, 1.03))
    ax.legend(fontsize=8)
axes[0].set_ylabel("rate")
fig.suptitle(f"Fig. 1: PGD post-processing, {dataset} (profile {profile}); "
             f"paper: MR ≈ 0 at R = 2 on CIFAR-10")
fig.tight_layout()
glue("fig_pgd", fig)
plt.close(fig)

# %% [markdown]
# λ balances the two terms of Eq. 2 and the paper gives no value. The sweep below, on the
# watermark at one radius, shows what the choice does: a larger λ removes more of the IP set and
# costs more accuracy.

# %%
lam_table = pd.DataFrame([{"λ": lam, "MR": accuracy(o.model, trigger.x, trigger.y),
                           "test acc": evaluate(o, evalset), "‖δ‖₂": o.record["delta_norm"]}
                          for lam in P["lam_sweep"] for o in [pgd(wm_plain, trigger, P["lam_radius"], lam)]]
                         ).set_index("λ").round(3)
lam_table.columns.name = f"ours ({profile}), watermark, R = {P['lam_radius']}; the paper gives no λ"
glue("lam_sweep", lam_table)

# %% [markdown]
# ## Non-stolen models (Table 1)
#
# Models trained from scratch on the owner's half with other seeds (the `cpu` profile trains
# fewer, for fewer epochs; settings above). Their MR on the watermark is that of a model that
# never saw the trigger set; on the fingerprint, how often an independent model lands on the same
# side of the clean target's boundary.

# %%
PAPER_T1 = {"cifar10": {"watermark": (0.10, 0.15), "fingerprint": (0.03, 0.14)},
            "mnist": {"watermark": (0.11, 0.14), "fingerprint": (0.02, 0.11)}}
nonstolen = [train(replace(cfg, epochs=P["nonstolen_epochs"], seed=seed + i), progress=progress)
             for i in range(1, P["nonstolen"] + 1)]
ips = {"watermark": trigger, "fingerprint": fp}
ns_mr = {kind: np.array([accuracy(m.model, ip.x, ip.y) for m in nonstolen]) for kind, ip in ips.items()}
LOW_MR = E["max_nonstolen_mr"]        # what "low" means for a non-stolen model's MR
t1_rows = []
for kind in ips:
    for stat, fn, j in (("median", np.median, 0), ("maximum", np.max, 1)):
        ours, paper = float(fn(ns_mr[kind])), PAPER_T1[dataset][kind][j]
        t1_rows.append(Row(f"non-stolen MR, {kind}, {stat}", ours, paper, unit="MR",
                           note=f"{len(nonstolen)} models (paper 50); test acc "
                                f"{np.mean([evaluate(m, evalset) for m in nonstolen]):.3f} on average",
                           status=status(ours, paper, 0.05, ours <= LOW_MR)))
table1 = comparison(t1_rows, profile)
glue("table1", table1)

# %% [markdown]
# ## Fine-tuning and distillation (Table 2)
#
# The attacker post-processes the stolen target on its own data: **fine-tuning** (FTAL: all
# layers, true labels, constant learning rate) and **distillation** (a student initialised from
# the target learns its soft labels at temperature T; starting from the target keeps the ℓ2
# drift meaningful). The ℓ2 perturbation is the distance between the post-processed and the target
# parameters. The paper attacks for 50 epochs; the `cpu` profile for far fewer (settings above), so
# its drifts are smaller. Its watermark target is the one trained with noise (§5's target, which
# Fig. 3 below needs); the `paper` profile also attacks the plain watermarked model (§3's target).

# %%
PAPER_T2 = {"cifar10": {("watermark", "fine-tuning"): (0.92, 0.61, 15.76),
                        ("watermark", "distillation"): (0.93, 0.80, 15.08),
                        ("fingerprint", "fine-tuning"): (0.92, 0.65, 16.67),
                        ("fingerprint", "distillation"): (0.92, 0.65, 15.20)},
            "mnist": {("watermark", "fine-tuning"): (0.99, 0.39, 17.91),
                      ("watermark", "distillation"): (0.99, 0.50, 16.25),
                      ("fingerprint", "fine-tuning"): (0.99, 0.29, 17.24),
                      ("fingerprint", "distillation"): (0.99, 0.42, 16.05)}}
post_targets = {("watermark", "noise-trained"): (wm_noise, trigger), ("fingerprint", "clean"): (clean, fp)}
if P["attack_plain_wm"]:
    post_targets[("watermark", "plain")] = (wm_plain, trigger)
post = {}
for (kind, which), (base, ip) in post_targets.items():
    post[(kind, which, "fine-tuning")] = attacks.fine_tune(
        base, "FTAL", post_data, epochs=P["post_epochs"], lr=P["post_lr"], augment=info.augment,
        seed=seed, progress=progress)
    post[(kind, which, "distillation")] = attacks.distill(
        base, post_data, epochs=P["post_epochs"], lr=P["post_lr"], temperature=P["temperature"],
        augment=info.augment, seed=seed, progress=progress)
t2 = []
for (kind, which, how), m in post.items():
    base, ip = post_targets[(kind, which)]
    pa, pmr, pl2 = PAPER_T2[dataset][(kind, how)]
    t2.append({"IP set": kind, "target": which, "post-processing": how,
               "test acc": evaluate(m, evalset), "MR": accuracy(m.model, ip.x, ip.y),
               "ℓ2 perturbation": I.l2_distance(m.model, base.model),
               "paper acc": pa, "paper MR": pmr, "paper ℓ2": pl2,
               "minutes": m.record["seconds"] / 60})
t2 = pd.DataFrame(t2)
table2 = t2.set_index(["IP set", "target", "post-processing"]).round(3)
table2.columns.name = f"ours ({profile})"
glue("table2", table2)

# %% [markdown]
# ## §5: certified matching rate, IPCert against median smoothing (Figs. 2 and 5)
#
# One Monte-Carlo pass serves both frameworks: m noisy copies θ + ε_j each classify the whole IP
# set. **IPCert** takes the majority label per IP point and certifies it with the radius of Eq. 5
# (Clopper–Pearson bounds at level α/|Y| each); CMR(R) counts the points whose label matches and
# whose radius exceeds R. **MS** takes, per noisy copy, the MR over the whole IP set and certifies
# the median of those rates (an order statistic). The watermark is certified on the model trained
# with noise at σ_wm, the fingerprint on the clean model at σ_fp. With m draws no radius can exceed
# about σ/2·(Φ⁻¹(p̲) − Φ⁻¹(1 − p̲)), p̲ = (α/|Y|)^(1/m): 2.4 σ at m = 1,000, 3.1 σ at 10,000.

# %%
sigmas = {"watermark": P["sigma_wm"], "fingerprint": P["sigma_fp"]}
smoothed_target = {"watermark": wm_noise, "fingerprint": clean}
vote_seconds = []


def votes(model, ip, sigma, m):
    v = I.smoothed_votes(model, ip, sigma=sigma, m=m, seed=seed, progress=progress)
    vote_seconds.append(v.seconds)
    return v


def grid(sigma):
    return sigma * np.linspace(0, 3.2, 65)


main_votes = {k: votes(smoothed_target[k], ips[k], sigmas[k], P["m"]) for k in ips}
curves = {k: I.cmr_curves(main_votes[k], ips[k].y, grid(sigmas[k]), P["alpha"]) for k in ips}

fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharey=True)
for ax, (kind, c) in zip(axes, curves.items()):
    for name, curve in c.items():
        ax.plot(grid(sigmas[kind]), curve, color=COLORS[name], label=name)
    ax.set(title=f"{kind}: σ = {sigmas[kind]}, m = {P['m']:,}", xlabel="perturbation bound R (ℓ2)",
           ylim=(-0.03, 1.03))
    ax.legend(fontsize=8)
axes[0].set_ylabel("certified matching rate")
fig.suptitle(f"Figs. 2 and 5: CMR of IPCert and MS, {dataset} (profile {profile})")
fig.tight_layout()
glue("fig_cmr", fig)
plt.close(fig)

cmr_rows = []
for kind in ips:
    v, y, s = main_votes[kind], ips[kind].y.numpy(), sigmas[kind]
    cmr_rows.append({"IP set": kind, "σ": s, "smoothed MR, IPCert": matching_rate(v.labels, y),
                     "smoothed MR, MS": v.median_match,
                     "largest R/σ with CMR = 1, IPCert": I.largest_radius(grid(1), curves[kind]["IPCert"]),
                     "largest R/σ with CMR = 1, MS": I.largest_radius(grid(1), curves[kind]["MS"]),
                     "largest R/σ with CMR ≥ 0.5, IPCert": I.largest_radius(grid(1), curves[kind]["IPCert"], 0.5),
                     "largest R/σ with CMR ≥ 0.5, MS": I.largest_radius(grid(1), curves[kind]["MS"], 0.5),
                     "mean CMR over the R grid, IPCert − MS":
                         float(np.mean(curves[kind]["IPCert"] - curves[kind]["MS"]))})
cmr_table = pd.DataFrame(cmr_rows).set_index("IP set").round(3)
cmr_table.columns.name = f"ours ({profile}); paper (CIFAR-10, watermark, σ = 1): IPCert CMR = 1 up to R = 1.25"
glue("cmr", cmr_table)

# %% [markdown]
# ## MR after fine-tuning and distillation (Fig. 3), and on non-stolen models (Table 3)
#
# The post-processed models of Table 2 and the non-stolen models, smoothed as their targets are
# (same σ); m = `m_mr` draws, since only the smoothed MR is read. Claims: IPCert's MR is at least
# MS's on post-processed models, and the two are alike (low) on non-stolen models.

# %%
def smoothed_mrs(model, kind):
    v = votes(model, ips[kind], sigmas[kind], P["m_mr"])
    return {"no smoothing": accuracy(model.model, ips[kind].x, ips[kind].y),
            "MS": v.median_match, "IPCert": matching_rate(v.labels, ips[kind].y.numpy())}


post_mr = pd.DataFrame([{"IP set": kind, "target": which, "post-processing": how,
                         **smoothed_mrs(m, kind)} for (kind, which, how), m in post.items()]
                       ).set_index(["IP set", "target", "post-processing"]).round(3)
post_mr.columns.name = f"MR, ours ({profile}); paper (Fig. 3, figure only): IPCert ≥ MS on each model"
glue("post_mr", post_mr)

fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), sharey=True)
for ax, kind in zip(axes, ips):
    d = post_mr.loc[kind]
    labels = [f"{w}\n{h}" for w, h in d.index]
    xs = np.arange(len(d))
    for i, col in enumerate(("no smoothing", "MS", "IPCert")):
        ax.bar(xs + (i - 1) * 0.27, d[col], 0.27, label=col, color=COLORS.get(col, "tab:gray"))
    ax.set_xticks(xs, labels, fontsize=8)
    ax.set(title=kind, ylim=(0, 1.05))
axes[0].set_ylabel("MR of the post-processed model")
axes[1].legend(fontsize=8)
fig.suptitle(f"Fig. 3: MR after post-processing, {dataset} (profile {profile})")
fig.tight_layout()
glue("fig_post", fig)
plt.close(fig)

PAPER_T3 = {"watermark": {"MS": (0.12, 0.16), "IPCert": (0.12, 0.15)},
            "fingerprint": {"MS": (0.08, 0.14), "IPCert": (0.06, 0.15)}}
ns_smoothed = {kind: pd.DataFrame([smoothed_mrs(m, kind) for m in nonstolen]) for kind in ips}
t3_rows = []
for kind in ips:
    for fw in ("MS", "IPCert"):
        for stat, fn, j in (("median", np.median, 0), ("maximum", np.max, 1)):
            ours = float(fn(ns_smoothed[kind][fw]))
            paper = PAPER_T3[kind][fw][j] if dataset == "cifar10" else None
            t3_rows.append(Row(f"non-stolen smoothed MR, {kind}, {fw}, {stat}", ours, paper, unit="MR",
                               note=f"{len(nonstolen)} models, m = {P['m_mr']:,}" if paper is not None
                               else "Table 3 is for CIFAR-10 only",
                               status=status(ours, paper, 0.05, ours <= LOW_MR)))
table3 = comparison(t3_rows, profile)
glue("table3", table3)

# %% [markdown]
# ## Making CMR larger (Fig. 4)
#
# (a) The watermarked model trained **with** noise against the one trained **without** it, both
# certified at σ_wm. (b) Fingerprints chosen by **robust selection** (Eq. 7: IPGuard's loss plus
# η times a classification and a robustness loss estimated from `eta_draws` noisy copies per
# step), certified at σ = `eta_sigma` (the paper uses 0.015 here, since at 0.01 every curve starts
# at 1). The η sweep uses `eta_n` points and `eta_steps` steps for every η, η = 0 included.

# %%
noise_votes = {"with noise": main_votes["watermark"],
               "without noise": votes(wm_plain, trigger, sigmas["watermark"], P["m"])}
noise_curves = {k: I.cmr_curves(v, trigger.y, grid(sigmas["watermark"]), P["alpha"])["IPCert"]
                for k, v in noise_votes.items()}
eta_sets = {eta: I.ipguard_fingerprints(clean, dataset, P["eta_n"], k=P["fp_k"], steps=P["eta_steps"],
                                        lr=P["fp_lr"], eta=eta, sigma=P["eta_sigma"],
                                        draws=P["eta_draws"], gamma=P["gamma"], seed=seed,
                                        progress=progress)
            for eta in P["eta_sweep"]}
eta_curves = {eta: I.cmr_curves(votes(clean, s, P["eta_sigma"], P["m_curve"]), s.y,
                                grid(P["eta_sigma"]), P["alpha"])["IPCert"] for eta, s in eta_sets.items()}

fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharey=True)
for k, c in noise_curves.items():
    axes[0].plot(grid(sigmas["watermark"]), c, label=k)
axes[0].set(title=f"(a) watermark, σ = {sigmas['watermark']}, m = {P['m']:,}",
            xlabel="R (ℓ2)", ylabel="CMR (IPCert)", ylim=(-0.03, 1.03))
for eta, c in eta_curves.items():
    axes[1].plot(grid(P["eta_sigma"]), c, label=f"η = {eta:g}")
axes[1].set(title=f"(b) fingerprint, σ = {P['eta_sigma']}, m = {P['m_curve']:,}", xlabel="R (ℓ2)",
            ylim=(-0.03, 1.03))
for ax in axes:
    ax.legend(fontsize=8)
fig.suptitle(f"Fig. 4: training with noise and robust selection, {dataset} (profile {profile})")
fig.tight_layout()
glue("fig_noise", fig)
plt.close(fig)
noise_gain = float(np.mean(noise_curves["with noise"] - noise_curves["without noise"]))
fig4_table = pd.DataFrame(
    [{"curve": f"watermark {k}", "mean CMR over R": float(np.mean(c)), "CMR at R = 0": float(c[0]),
      "MR of the model (no smoothing)": accuracy((wm_noise if k == "with noise" else wm_plain).model,
                                                 trigger.x, trigger.y)}
     for k, c in noise_curves.items()]
    + [{"curve": f"fingerprint η = {eta:g}", "mean CMR over R": float(np.mean(c)), "CMR at R = 0": float(c[0]),
        "MR of the model (no smoothing)": accuracy(clean.model, eta_sets[eta].x, eta_sets[eta].y)}
       for eta, c in eta_curves.items()]).set_index("curve").round(3)
fig4_table.columns.name = (f"ours ({profile}); paper (Fig. 4, figure only): training with noise and "
                            "η > 0 raise CMR")
glue("fig4_table", fig4_table)

# %% [markdown]
# ## The parameters of IPCert: α, m, σ (Figs. 6 and 7)
#
# α only changes the confidence bounds, so its sweep reuses the main votes. The m sweep reads the
# first m′ draws of the same noise sequence (the engine's draws for a seed do not depend on m). The
# σ sweep certifies the same targets at other noise levels (`m_curve` draws; the models are not
# retrained for each σ). The table also gives MS's mean CMR from the same votes, so it shows at
# which σ and m majority voting certifies more than median smoothing on this model.

# %%
def ipcert_curve(v, ip, sigma, alpha=P["alpha"]):
    return I.cmr_curves(v, ip.y, grid(sigma), alpha)["IPCert"]


fig, axes = plt.subplots(2, 3, figsize=(13, 6.2), sharey=True)
sweep_rows = []
for row, kind in enumerate(ips):
    s, ip, target = sigmas[kind], ips[kind], smoothed_target[kind]
    for a in P["alpha_sweep"]:
        c = ipcert_curve(main_votes[kind], ip, s, a)
        axes[row, 0].plot(grid(s), c, label=f"α = {a:g}")
        sweep_rows.append(dict(ip=kind, parameter="α", value=a, mean_cmr=float(np.mean(c))))
    for m in sorted(set(P["m_sweep"]) | {P["m"]}):
        v = main_votes[kind] if m == P["m"] else votes(target, ip, s, m)
        both = I.cmr_curves(v, ip.y, grid(s), P["alpha"])
        axes[row, 1].plot(grid(s), both["IPCert"], label=f"m = {m:,}")
        sweep_rows.append(dict(ip=kind, parameter="m", value=m, mean_cmr=float(np.mean(both["IPCert"])),
                               mean_cmr_ms=float(np.mean(both["MS"]))))
    for sig in P[f"sigma_sweep_{'wm' if kind == 'watermark' else 'fp'}"]:
        both = I.cmr_curves(votes(target, ip, sig, P["m_curve"]), ip.y, grid(sig), P["alpha"])
        axes[row, 2].plot(grid(sig), both["IPCert"], label=f"σ = {sig:g}")
        sweep_rows.append(dict(ip=kind, parameter="σ", value=sig, mean_cmr=float(np.mean(both["IPCert"])),
                               mean_cmr_ms=float(np.mean(both["MS"])),
                               largest_R_cmr_half=I.largest_radius(grid(sig), both["IPCert"], 0.5)))
    for col, title in enumerate(("α", "m", "σ")):
        axes[row, col].set(title=f"{kind}: varying {title}", xlabel="R (ℓ2)", ylim=(-0.03, 1.03))
        axes[row, col].legend(fontsize=7)
    axes[row, 0].set_ylabel("CMR (IPCert)")
fig.suptitle(f"Figs. 6 and 7: α, m and σ, {dataset} (profile {profile})")
fig.tight_layout()
glue("fig_sweeps", fig)
plt.close(fig)
sweeps = (pd.DataFrame(sweep_rows).set_index(["ip", "parameter", "value"])
          .rename(columns={"mean_cmr": "mean CMR over R, IPCert", "mean_cmr_ms": "mean CMR over R, MS",
                           "largest_R_cmr_half": "largest R with CMR ≥ 0.5 (IPCert)"}).round(3))
sweeps.columns.name = (f"ours ({profile}); σ rows: m = {P['m_curve']:,}; R grid 0–3.2σ; paper (Figs. 6–7, "
                        "figure only): CMR grows with α and m, σ has a best value")
glue("sweeps", sweeps)

# %% [markdown]
# ## Checks
#
# At `cpu` and `paper` these are the reproduction targets of this page: the clean model learns
# and the noise-trained model keeps its watermark; non-stolen models' MR stays low; PGD removes
# each IP set (MR ≤ `pgd_removed_mr`) within a radius well below the ℓ2 drift of fine-tuning,
# which does not remove it (the post-processed models keep a smoothed MR above every
# non-stolen model's); IPCert's smoothed MR is at least MS's (targets and post-processed models,
# Fig. 3) and its CMR curve lies at or above MS's (mean gap over the R grid, Figs. 2 and 5);
# training with noise raises the watermark's CMR (Fig. 4a). A target of `None` in the profile
# means the check is measured and shown but not asserted at that profile (the profile says why).
# At `smoke` they are sanity bounds only.

# %%
def removal_radius(kind):
    d = pgd_df[(pgd_df.ip == kind) & (pgd_df.MR <= E["pgd_removed_mr"])]
    return float(d.R.min()) if len(d) else float("inf")


drift = {kind: float(t2[(t2["IP set"] == kind) & (t2["post-processing"] == "fine-tuning")]
                     ["ℓ2 perturbation"].min()) for kind in ips}
r_remove = {kind: removal_radius(kind) for kind in ips}
gap = {kind: float(np.mean(curves[kind]["IPCert"] - curves[kind]["MS"])) for kind in ips}
mr_gap = {kind: float(np.mean([matching_rate(main_votes[kind].labels, ips[kind].y.numpy())
                               - main_votes[kind].median_match]
                              + list(post_mr.loc[kind]["IPCert"] - post_mr.loc[kind]["MS"])))
          for kind in ips}
clean_acc, wm_mr = evaluate(clean, evalset), accuracy(wm_noise.model, trigger.x, trigger.y)
check_rows = []


def target(key, default):
    """The profile's target for ``key``, or the paper's claim when the profile does not assert it."""
    return default if E[key] is None else E[key]


def check(name, holds, measured, goal):
    """One claim: ``goal`` None means measured and shown, not asserted, at this profile."""
    check_rows.append({"check": name, "holds": bool(holds), "asserted": goal is not None,
                       "measured": measured})


check("clean test accuracy", clean_acc >= E["min_clean_acc"], f"{clean_acc:.3f} (≥ {E['min_clean_acc']})",
      E["min_clean_acc"])
check("noise-trained watermark MR (no smoothing)", wm_mr >= E["min_wm_trigger"],
      f"{wm_mr:.2f} (≥ {E['min_wm_trigger']})", E["min_wm_trigger"])
for kind, key in (("watermark", "max_nonstolen_mr"), ("fingerprint", "max_nonstolen_mr_fp")):
    check(f"{kind}: non-stolen MR stays low", ns_mr[kind].max() <= target(key, 0.3),
          f"max {ns_mr[kind].max():.2f} over {len(nonstolen)} models (≤ {target(key, 0.3)})", E[key])
for kind in ips:
    check(f"{kind}: PGD removes it within a fraction of the fine-tuning drift",
          r_remove[kind] <= E["max_pgd_to_drift"] * drift[kind],
          f"R = {r_remove[kind]:g} vs drift {drift[kind]:.3g} (ratio ≤ {E['max_pgd_to_drift']})",
          E["max_pgd_to_drift"])
    check(f"{kind}: post-processed MR above every non-stolen model",
          post_mr.loc[kind]["IPCert"].min() > ns_smoothed[kind]["IPCert"].max(),
          f"post-processed min {post_mr.loc[kind]['IPCert'].min():.2f} vs non-stolen max "
          f"{ns_smoothed[kind]['IPCert'].max():.2f}", E["post_above_nonstolen"] or None)
    check(f"{kind}: IPCert smoothed MR ≥ MS", mr_gap[kind] >= target("min_ipcert_mr_minus_ms", 0.0),
          f"mean gap {mr_gap[kind]:+.3f} (≥ {target('min_ipcert_mr_minus_ms', 0.0)})", E["min_ipcert_mr_minus_ms"])
    check(f"{kind}: IPCert CMR ≥ MS CMR", gap[kind] >= target("min_ipcert_minus_ms", -0.02),
          f"mean gap over R {gap[kind]:+.3f} (≥ {target('min_ipcert_minus_ms', -0.02)})", E["min_ipcert_minus_ms"])
check("training with noise raises the watermark's CMR", noise_gain >= target("min_noise_gain", 0.0),
      f"mean CMR gain {noise_gain:+.3f} (≥ {target('min_noise_gain', 0.0)})", E["min_noise_gain"])
check_table = pd.DataFrame(check_rows).set_index("check")
checks = dict(check_table["holds"])
check_table.columns.name = f"profile {profile}"
glue("checks", check_table)

# %%
failed = check_table[check_table.asserted & ~check_table.holds]
assert failed.empty, f"checks at profile {profile} failed:\n{failed.to_string()}"
print("all asserted checks passed at profile", profile)

# %% [markdown]
# ## Results record
#
# The headline numbers go to a small JSON file that the book's summary table reads. Radii in
# units of σ make the paper's CIFAR-10 anchors (σ = 1) comparable with ours.

# %%
cifar = dataset == "cifar10"
headline = list(t1_rows)
for kind in ips:
    headline.append(Row(f"PGD radius removing the {kind} (MR ≤ {E['pgd_removed_mr']})", r_remove[kind],
                        2.0 if cifar and kind == "watermark" else None, unit="ℓ2",
                        note="paper: MR ≈ 0 at R = 2 (Fig. 1, CIFAR-10)" if cifar and kind == "watermark"
                        else "Fig. 1 (figure only)",
                        status=status(r_remove[kind], 2.0 if cifar and kind == "watermark" else None,
                                              0.5, checks[f"{kind}: PGD removes it within a fraction of the fine-tuning drift"])))
for _, r in t2.iterrows():
    ok = checks[f"{r['IP set']}: post-processed MR above every non-stolen model"]
    headline += [Row(f"{r['post-processing']} MR, {r['IP set']} ({r['target']} target)", float(r["MR"]),
                     r["paper MR"], unit="MR", note="Table 2", status=status(float(r["MR"]), r["paper MR"], 0.1, ok)),
                 Row(f"{r['post-processing']} ℓ2 perturbation, {r['IP set']} ({r['target']} target)",
                     float(r["ℓ2 perturbation"]), r["paper ℓ2"], unit="ℓ2",
                     note=f"Table 2; {P['post_epochs']} epoch(s) (paper 50), {count_parameters(clean.model):,} parameters",
                     status=status(float(r["ℓ2 perturbation"]), r["paper ℓ2"], 2.0, ok))]
for fw, paper in (("IPCert", 1.25), ("MS", 0.75)):
    ours = float(cmr_table.loc["watermark", f"largest R/σ with CMR = 1, {fw}"])
    paper = paper if cifar else None
    headline.append(Row(f"watermark: largest R/σ with CMR = 1, {fw}", ours, paper, unit="R/σ",
                        note=(f"paper: σ = 1, m = 10,000 (text of §5.2; MS 'degrades past 0.75'); ours σ = "
                              f"{sigmas['watermark']}, m = {P['m']:,}") if cifar else "Fig. 2 (figure only)",
                        status=status(ours, paper, 0.25, checks["watermark: IPCert CMR ≥ MS CMR"])))
headline += [r for r in t3_rows if r.quantity.endswith("median")]
headline.append(Row("watermark: mean CMR gain from training with noise", noise_gain, None, unit="CMR",
                    note="Fig. 4(a) (figure only)", status="not in paper"))
used = [clean, wm_plain, wm_noise, *nonstolen, *post.values()]
compute_minutes = (sum(m.record.get("seconds", 0) for m in used) + pgd_df.seconds.sum()
                   + sum(vote_seconds)) / 60
glue("headline", comparison(headline, profile))
path = results.write("ipcert2023", dataset, profile, headline, device=device.type,
                     compute_minutes=compute_minutes, folder=results_dir)
print(f"compute of the models, attacks and votes used (empty cache): {compute_minutes:.1f} min; "
      f"this run: {(time.time() - t_start) / 60:.1f} min")
print("wrote", path)
