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
# # The five schemes compared: every scheme against every attack
#
# Each paper page answers "does this paper's claim hold?". This notebook answers the question a
# reader brings to five watermarking papers: **which watermark survives what?** The papers cannot
# be compared as published (different models, thresholds, attacks and budgets), so here every scheme
# embeds into **one host** per dataset, trained the same way; each scheme's threshold is set so that
# never-watermarked hosts (other seeds) are claimed at most at **one false-claim rate α**, and the
# false claims are then measured on those hosts, each against the threshold calibrated on the
# others; every attack comes from `wmlib.attacks` at a stated budget. Verification goes through each
# scheme's key (`wmlib.keys`), exactly as `wmbook verify` reads a suspect file.
#
# A cell is **removed** when the attacked model is no longer claimed and keeps its accuracy within
# the margin of the owner's, **removed at a cost** when it is not claimed but lost more, and
# **survived** when it is still claimed.

# %% tags=["parameters", "remove-cell"]
dataset = "mnist"        # mnist | cifar10
profile = "smoke"        # smoke | cpu | paper
seed = 0
tiny = False             # the profile's host and every step at a size that runs in a minute
results_dir = None       # where the results record goes (None: build/results)
progress = False         # tqdm bars inside the notebook

# %% tags=["remove-cell"]

import matplotlib.pyplot as plt
from myst_nb import glue

from wmlib import matrix, papers, report, results
from wmlib.device import default_device
from wmlib.matrix import CELLS
from wmlib.papers import matrix as steps
from wmlib.settings import Checks, Targets

P = papers.settings("matrix", profile, dataset)
if tiny:
    P = P.tiny()
device = default_device()
plt.rcParams.update({"figure.dpi": 110})

# %% [markdown]
# ## Settings
#
# The host, the schemes' own settings (those of their papers' notebooks at `paper_profile`), the
# attack budgets and the false-claim rate. An attack that costs more than `margin` points of test
# accuracy is not counted as a plain removal.

# %%
banner = steps.banner(P, dataset, profile, device.type, tiny)
glue("banner", banner, display=False)
print(banner)
P.table()

# %% [markdown]
# ## The matrix
#
# Every training and attack is cached; a rerun computes only the verdicts.

# %%
cells, schemes = matrix.evaluate_matrix(P, dataset, seed=seed, progress=progress)
fig = steps.figure(cells, f"{dataset}, profile {profile}{' (tiny)' if tiny else ''}: score in each cell")
glue("fig_matrix", fig)
plt.close(fig)

# %%
finding = steps.finding(cells, schemes, P)
glue("finding", finding, display=False)
print(finding)

# %% [markdown]
# ## Each cell
#
# The verdict on the attacked model (score against the scheme's calibrated threshold), its test
# accuracy on images the attacker did not see and what the attack cost; what the attacker needs
# (their own images, the owner's key) beside it.

# %%
cell_table = report.tidy(steps.table(cells), {"score": "score", "threshold": "score", "accuracy after (%)": "%",
                                              "cost (points)": "points"})
glue("cells", cell_table)

# %% [markdown]
# ## The schemes: embedding cost, verification access, threshold and false claims
#
# The threshold each scheme is verified against at α, the false claims measured on the
# never-watermarked hosts (each judged against the threshold calibrated on the others), the
# largest score such a host reached, and what the owner's verification needs.

# %%
scheme_table = report.tidy(schemes.drop(columns=["training (min)"]).rename(index=steps.SCHEME_NAMES),
                           {"test accuracy": "%", "embedding cost": "points", "threshold": "score",
                            "null max": "score"})
glue("schemes", scheme_table)

# %% [markdown]
# ## Checks
#
# Every cell is one of the three outcomes or marked not applicable (asserted at every profile). From
# `cpu` on, every scheme's owner is claimed (a matrix row whose owner is not claimed measures
# nothing) and at most one never-watermarked host is falsely claimed per scheme (the thresholds are
# calibrated for a rate α); at `smoke` and in tiny runs those two are shown only.

# %%
checks = Checks(profile, Targets())
known = set(CELLS) | {"n/a"}
checks.add("every cell is survived, removed, removed at a cost or n/a", bool(cells.cell.isin(known).all()),
           ", ".join(sorted(set(cells.cell))))
for s in schemes.index:
    name = steps.SCHEME_NAMES[s]
    checks.add(f"{name}: the owner's model is claimed", bool(schemes.loc[s, "owner claimed"]),
               f"threshold {schemes.loc[s, 'threshold']:.3g}", asserted=profile != "smoke" and not tiny)
    falsely = int(schemes.loc[s, "false claims"].split()[0])
    checks.add(f"{name}: at most one never-watermarked host claimed", falsely <= 1,
               schemes.loc[s, "false claims"], asserted=profile != "smoke" and not tiny)
glue("checks", checks.table())
checks.table()

# %% [markdown]
# ## Results record

# %%
rows = [results.ours_only(f"{steps.SCHEME_NAMES[s]}: attacks survived", float((cells[(cells.scheme == s)
                                                                                      & (cells.cell != "n/a")].cell
                                                                               == "survived").sum()), "count",
                          note=f"of {int((cells[(cells.scheme == s)].cell != 'n/a').sum())} attacks")
        for s in schemes.index]
rows += [results.ours_only(f"{steps.SCHEME_NAMES[s]}: false claims", float(schemes.loc[s, "false claims"].split()[0]),
                           "count", note=f"of {P.n_independent} never-watermarked hosts at α = {P.alpha:g}")
         for s in schemes.index]
path = results.write("matrix", dataset, profile, rows, seed=seed,
                     compute_minutes=matrix.training_minutes(P, dataset, schemes, seed=seed),
                     folder=results_dir)
print("wrote", path)
checks.assert_all()
