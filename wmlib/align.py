"""Alignment: a suspect model brought into the owner's coordinates by function-preserving steps
only, so that a verification that reads weights (or measures a certified distance) sees through
zero-cost edits (:func:`wmlib.attacks.zero_cost_edit`) without being able to create a function.

:func:`align` (1) puts both models in a canonical scale: every rescaling site of
:func:`wmlib.units.describe` divided out, units after a batch norm to running_var + ε = 1, the
others to incoming weights of norm 1 (the normalisation step of Li & Wang 2023's NeuronMap, exact
instead of per layer); (2) removes the suspect's dummy units (Yan et al. 2023) where it has more
than the owner: units whose canonical incoming weights coincide carry the same values, so they are
merged by summing their outgoing weights (split copies, clique members), and units read by nothing
or reading nothing (zero outgoing weights; zero incoming weights and bias with a batch norm mapping
0 to 0) are dropped; (3) finds each group's permutation with ``scipy.optimize.linear_sum_assignment``,
on weights (Git Re-Basin weight matching, Ainsworth et al. 2023, Alg. 1: coordinate descent over
the groups until none changes, after a first pass in forward order that uses only the tensors whose
other axes are already matched) and / or on activations over the owner's probe images (NeuronMap's
matching, by optimal assignment instead of greedy); (4) scales every unit back to the owner's scale.
Every step keeps the suspect's outputs, up to float rounding and the merge tolerance.
"""
from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field

import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from . import certspace, units
from . import data as D
from .cache import key_hash
from .train import Trained

METHODS = ("weights", "activations", "both")


@dataclass
class GroupAlignment:
    """What :func:`align` did to one unit group of the suspect."""

    group: str
    units: int             # the owner's
    suspect_units: int     # the suspect's, dummies included
    merged: int            # units merged into a unit with the same incoming weights
    dropped: int           # units removed that read nothing or are read by nothing
    method: str            # how the permutation was found
    moved: int             # units that changed place


@dataclass
class AlignReport:
    method: str
    groups: list[GroupAlignment] = field(default_factory=list)
    rounds: int = 0                  # weight-matching rounds over all groups
    distance: float = float("nan")   # certified-space distance (wmlib.certspace, folded) to the owner
    max_logit_change: float = float("nan")   # the alignment's own change of the suspect's outputs
    logit_scale: float = float("nan")        # the suspect's largest logit magnitude on the same batch


def _mask_rows(masks, e: units.Entry, n: int) -> torch.Tensor | None:
    """The boolean mask of entry ``e``'s tensor laid out as :func:`wmlib.units.unit_slices` reads it."""
    if not masks or e.name not in masks:
        return None
    return masks[e.name].index_select(e.axis, e.index()).movedim(e.axis, 0).reshape(n, -1)


def canonicalise(model: nn.Module, groups: list[units.Group], masks=None) -> dict[tuple[int, int], torch.Tensor]:
    """Rescale ``model`` in place to its canonical scale (module docstring); returns the factor
    applied per (group, site), in forward order (a site's factor depends on earlier sites).
    ``masks``: per tensor, positions left out of the norms (a secret written into the weights)."""
    factors = {}
    for gi, g in enumerate(groups):
        for si, site in enumerate(g.sites):
            if site.means:
                e = g.entries[site.variances[0]]
                where = e.name
                v = units.unit_slices(model, e).double()[:, 0]
                f = 1 / torch.sqrt(v + model.get_submodule(e.module).eps)
            else:
                rows, where = [], g.entries[site.out[0]].name
                for i in site.out:
                    r, m = units.unit_slices(model, g.entries[i]).double(), _mask_rows(masks, g.entries[i], g.size)
                    rows.append(r if m is None else r.masked_fill(m, 0.0))
                norm = torch.cat(rows, 1).norm(dim=1)
                f = torch.where(norm > 0, 1 / norm.clamp_min(1e-300), torch.ones_like(norm))
            if not bool((torch.isfinite(f) & (f > 0)).all()):
                raise ValueError(f"the units of {where} have no finite positive scale (the file holds "
                                 f"non-finite or degenerate values there): it cannot be aligned")
            units.rescale(model, g, site, f)
            factors[(gi, si)] = f
    return factors


def _slices(model, group, roles) -> list[torch.Tensor]:
    return [units.unit_slices(model, e).double() for e in group.entries if e.role in roles]


def _zero(rows: torch.Tensor, tol: float) -> torch.Tensor:
    norm = rows.norm(dim=1)
    return norm <= tol * norm.median().clamp_min(1e-30) if len(norm) else norm.bool()


def _dedupe(model: nn.Module, group: units.Group, excess: int, tol: float) -> tuple[int, int]:
    """Remove up to ``excess`` dummy units of ``group`` (canonical scale), in place: merges first,
    then units read by nothing or reading nothing. Returns (merged, dropped)."""
    n = group.size
    up = torch.cat(_slices(model, group, ("out", "bn")), 1)
    downs = [(e, units.unit_slices(model, e).double()) for e in group.entries if e.role == "in"]
    size = up.norm(dim=1)
    same = torch.cdist(up, up) <= tol * torch.maximum(size[:, None], size[None, :])
    removed, merged = set(), 0
    for i in range(n):
        if i in removed or excess - len(removed) <= 0:
            continue
        for j in torch.nonzero(same[i, i + 1:]).flatten().tolist():
            j += i + 1
            if j in removed or excess - len(removed) <= 0:
                continue
            for _, d in downs:               # the same incoming weights: the same values; outgoing weights add
                d[i] += d[j]
            removed.add(j)
            merged += 1
    zero_out = _zero(torch.cat([d for _, d in downs], 1), tol)
    inputs = [units.unit_slices(model, e).double() for e in group.entries
              if e.role == "out" or (e.role == "bn" and e.tensor in ("bias", "running_mean"))]
    zero_in = _zero(torch.cat(inputs, 1), tol) if inputs else torch.zeros(n, dtype=torch.bool)
    if zero_in.all():                        # nothing to compare with: only exact zeros read nothing
        zero_in = torch.cat(inputs, 1).abs().amax(1) == 0
    dropped = 0
    for i in range(n):
        if i not in removed and excess - len(removed) > 0 and bool(zero_out[i] or zero_in[i]):
            removed.add(i)
            dropped += 1
    everyone = torch.arange(n)
    for e, d in downs:
        units.set_unit_slices(model, e, everyone, d)
    keep = torch.tensor([i for i in range(n) if i not in removed], dtype=torch.long)
    units.reindex(model, group, keep)
    return merged, dropped


def _permuted(t: torch.Tensor, entry: units.Entry, perm: torch.Tensor) -> torch.Tensor:
    return t.index_copy(entry.axis, entry.index(), t.index_select(entry.axis, entry.index(perm)))


def _weight_cost(owner, suspect, groups, perms, g, touch, allowed=None, masks=None, memo=None, levels=None):
    """Σ over the tensors of group ``g`` of ⟨owner unit i, suspect unit j⟩, the suspect's other
    axes permuted by the current ``perms`` (Git Re-Basin weight matching); with ``allowed``, only
    the tensors whose other axes belong to those groups. None when no tensor qualifies."""
    n = groups[g].size
    memo = {} if memo is None else memo      # the owner's side: its unit rows and secret positions
    cost, used = torch.zeros(n, n, dtype=torch.float64), False
    parts_a, parts_b, used_entries = [], [], []
    for e in groups[g].entries:
        others = [(h, e2) for h, e2 in touch[e.name] if h != g and e2.axis != e.axis]
        if allowed is not None and any(h not in allowed for h, _ in others):
            continue
        b = units.tensor(suspect, e).detach()
        for h, e2 in others:
            b = _permuted(b, e2, perms[h])
        if ("rows", g, e.key) not in memo:
            memo[("rows", g, e.key)] = units.unit_slices(owner, e).double(), _mask_rows(masks, e, n)
        a, rows = memo[("rows", g, e.key)]
        b = b.index_select(e.axis, e.index()).movedim(e.axis, 0).reshape(n, -1).double()
        if rows is not None:       # the secret positions of the unit each suspect unit is matched to now: left out too
            b = b.masked_fill(rows[torch.argsort(perms[g])], 0.0)
        if masks is not None:
            parts_a.append(a)
            parts_b.append(b)
            used_entries.append(e.name)
        else:
            cost += a @ b.T
        used = True
    if masks is not None and used:     # each unit as one vector, outliers clipped, compared by cosine
        key = (g, tuple(used_entries))           # the owner's side does not change with the suspect
        if key not in memo:
            memo[key] = _robust_unit(torch.cat(parts_a, 1))
        a = memo[key]
        level = levels.get(key) if levels is not None else None
        b = torch.cat(parts_b, 1)
        if level is None:             # a unit's values are only reordered by the other groups' perms:
            level = _clip_level(b)    # its clipping level once per alignment
            if levels is not None:
                levels[key] = level
        b = _robust_unit(b, level)
        cost = a @ b.T
    return cost if used else None


def _clip_level(rows: torch.Tensor) -> torch.Tensor:
    """Per row, four robust standard deviations of its values (1.4826 × their median absolute
    deviation; inf when that is 0)."""
    mad = (rows - rows.median(1, keepdim=True).values).abs().median(1, keepdim=True).values
    return torch.where(mad > 0, 4 * 1.4826 * mad, torch.full_like(mad, float("inf")))


def _robust_unit(rows: torch.Tensor, level: torch.Tensor | None = None) -> torch.Tensor:
    """Each row clipped to ``level`` (default :func:`_clip_level` of its own values) and scaled to
    norm 1: a few large outliers (a payload far larger than the trained weights) neither dominate a
    unit nor set its scale."""
    level = _clip_level(rows) if level is None else level
    rows = torch.maximum(torch.minimum(rows, level), -level)
    return rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-300)


def _assign(cost: torch.Tensor) -> torch.Tensor:
    if not bool(torch.isfinite(cost).all()):
        raise ValueError("suspect: its weights or the owner's hold non-finite values (NaN or inf); nothing to align")
    _, cols = linear_sum_assignment(cost.numpy(), maximize=True)
    return torch.as_tensor(cols, dtype=torch.long)


def _match_weights(owner, suspect, groups, perms, *, first_pass: bool, max_rounds: int, seed: int, masks=None,
                   memo=None):
    """``memo``: the owner's side of the costs, shared by the alignments to one owner file."""
    memo = {} if memo is None else memo
    levels = {}                          # the suspect's clipping levels, per alignment
    touch = {}
    for gi, g in enumerate(groups):
        for e in g.entries:
            touch.setdefault(e.name, []).append((gi, e))
    if first_pass:                           # forward order, each group from what is matched already
        done = set()
        for gi in range(len(groups)):
            cost = _weight_cost(owner, suspect, groups, perms, gi, touch, allowed=done, masks=masks, memo=memo, levels=levels)
            if cost is None:
                cost = _weight_cost(owner, suspect, groups, perms, gi, touch, masks=masks, memo=memo, levels=levels)
            perms[gi] = _assign(cost)
            done.add(gi)
    gen = torch.Generator().manual_seed(seed)
    changed = {}
    for rounds in range(1, max_rounds + 1):
        moved = False
        for gi in torch.randperm(len(groups), generator=gen).tolist():
            new = _assign(_weight_cost(owner, suspect, groups, perms, gi, touch, masks=masks, memo=memo, levels=levels))
            if not torch.equal(new, perms[gi]):
                perms[gi], moved, changed[gi] = new, True, True
        if not moved:
            return rounds, changed
    return max_rounds, changed


def _standardised(acts: dict[str, torch.Tensor], tap) -> torch.Tensor:
    node, positions, block = tap
    v = acts[node]
    idx = (torch.tensor(positions)[:, None] * block + torch.arange(block)).reshape(-1)
    v = v.flatten(2) if v.ndim > 2 else v.unsqueeze(2)
    v = v.index_select(1, idx).reshape(len(v), len(positions), -1).movedim(1, 0).reshape(len(positions), -1).double()
    v = v - v.mean(1, keepdim=True)
    return v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _match_activations(owner, suspect, groups, probe) -> list[torch.Tensor]:
    """Per group, the assignment maximising Σ over the traced values that carry its units of the
    correlation of owner unit i with suspect unit j over the probe images (NeuronMap's matching)."""
    a, b = units.values(owner, probe), units.values(suspect, probe)
    perms = []
    for g in groups:
        cost = sum(_standardised(a, tap) @ _standardised(b, tap).T for tap in g.taps)
        perms.append(_assign(cost))
    return perms


def _check_architecture(suspect: nn.Module, owner: nn.Module, go, gs) -> None:
    def fail(why):
        raise ValueError(f"suspect: not a zero-cost transform of the owner's architecture ({why})")

    so, ss = owner.state_dict(), suspect.state_dict()
    if so.keys() != ss.keys():
        fail(f"tensors differ: {sorted(set(so) ^ set(ss))[:4]}")
    for path, m in owner.named_modules():
        if type(m) is not type(suspect.get_submodule(path)):
            fail(f"{path} is a {type(suspect.get_submodule(path)).__name__}, the owner's a {type(m).__name__}")
    if [(g.name, [e.key for e in g.entries]) for g in go] != [(g.name, [e.key for e in g.entries]) for g in gs]:
        fail("the unit groups differ")
    indexed = {(e.name, e.axis) for g in go for e in g.entries}
    for k in so:
        if so[k].ndim != ss[k].ndim or any(
                x != y for ax, (x, y) in enumerate(zip(so[k].shape, ss[k].shape)) if (k, ax) not in indexed):
            fail(f"{k} has shape {tuple(ss[k].shape)}, the owner's {tuple(so[k].shape)}")
    for a, b in zip(go, gs):
        if b.size < a.size or (b.size > a.size and not a.whole):
            fail(f"group {a.name} has {b.size} units, the owner {a.size}")


def _on_cpu(model: nn.Module) -> nn.Module:
    """``model`` itself when on the CPU, else a CPU copy (the caller's model stays where it is)."""
    t = next(iter(model.state_dict().values()), None)
    return model if t is None or t.device.type == "cpu" else copy.deepcopy(model).cpu()


def _masks(model: nn.Module, ignore: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per tensor of ``ignore``: a boolean tensor of its shape, True at the flat (row-major)
    positions ``ignore[name]``."""
    state = model.state_dict()
    unknown = sorted(set(ignore) - set(state))
    if unknown:
        raise ValueError(f"ignore names tensors the owner's file does not have: {unknown[:5]}")
    out = {}
    for name, flat in ignore.items():
        m = torch.zeros(state[name].shape, dtype=torch.bool)
        m[torch.unravel_index(torch.as_tensor(flat, dtype=torch.long), m.shape)] = True
        out[name] = m
    return out


def _masked(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of ``model`` with the positions ``masks`` holds set to 0."""
    out = copy.deepcopy(model)
    state = out.state_dict()
    with torch.no_grad():
        for name, m in masks.items():
            state[name].masked_fill_(m.to(state[name].device), 0)
    return out


@dataclass
class _OwnerSide:
    """What :func:`align` computes from the owner's file alone (reused for the same file, by content)."""

    groups: list
    shape: tuple
    own: nn.Module            # the owner in canonical scale
    factors: dict
    masks: dict | None
    ref: nn.Module            # ``own`` with the secret positions at 0: what the permutations are matched to
    masked_factors: dict
    memo: dict                # the owner's side of the weight-matching costs


_OWNER_SIDES: dict = {}


def file_stamp(model: nn.Module) -> str:
    """A content hash of ``model``: its modules' types and its file (every tensor's name, shape,
    dtype and values): equal stamps, equal models, whatever was edited in place and however."""
    h = hashlib.sha256(repr([(n, type(m).__qualname__) for n, m in model.named_modules()]).encode())
    for k, v in model.state_dict().items():
        t = v.detach().cpu().contiguous()
        h.update(f"{k}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _owner_side(owner: nn.Module, ignore) -> _OwnerSide:
    ig = None if not ignore else tuple(sorted((k, D.digest(torch.as_tensor(v).cpu())) for k, v in ignore.items()))
    key = (file_stamp(owner), ig)
    if key in _OWNER_SIDES:
        return _OWNER_SIDES[key]
    shape = units.input_shape(owner)
    go = units.describe(owner, shape)
    own = copy.deepcopy(owner).eval()
    factors = canonicalise(own, go)
    masks = _masks(own, ignore) if ignore else None
    ref = _masked(own, masks) if ignore else own
    masked_factors = canonicalise(copy.deepcopy(own), go, masks) if masks else {}
    if len(_OWNER_SIDES) >= 4:
        _OWNER_SIDES.pop(next(iter(_OWNER_SIDES)))
    side = _OwnerSide(go, shape, own, factors, masks, ref, masked_factors, {})
    _OWNER_SIDES[key] = side
    return side


def align(suspect: nn.Module, owner: nn.Module, *, probe: torch.Tensor | None = None, method: str = "weights",
          seed: int = 0, tol: float = 1e-5, max_rounds: int = 100,
          ignore: dict[str, torch.Tensor] | None = None, measure: bool = True) -> tuple[nn.Module, AlignReport]:
    """``suspect`` brought into ``owner``'s coordinates (module docstring): returns a model with the
    owner's architecture and shapes, computing the suspect's function, and the report.

    ``method``: "weights" (Git Re-Basin weight matching), "activations" (correlation over
    ``probe``, images in [0, 1] the owner has) or "both" (activations, then weight matching from
    there). ``tol``: relative tolerance under which incoming weights count as equal (merged) and
    outgoing weights as zero (dropped). ``seed``: the order of the groups in weight matching.
    ``ignore``: per tensor name of the owner's file, flat positions the matching must not look at
    — a secret written into the weights (Tartaglione et al.'s key): matched on, it would be copied
    into an unrelated suspect (measured: an unwatermarked LeNet5-caffe aligned on all weights read
    back with correlation 0.37, p ≈ 1e-107). The suspect's values are left out at the same places
    of the unit each suspect unit is currently matched to, and units are compared by the cosine of
    their values clipped to four robust standard deviations of each unit, so that neither the
    suspect's own copy of the secret (large outliers at permuted places) nor the scale it gives a
    unit pulls the matching. The scales are set without the secret positions, to the owner's.
    ``measure=False`` leaves the report's distance and logit change unmeasured (NaN): a reading
    that only needs the aligned file skips two forward passes and a pass over every tensor.
    A suspect that is not a transform of the owner's architecture raises ``ValueError``."""
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not known; accepted values: {list(METHODS)}")
    if method != "weights" and probe is None:
        raise ValueError(f"probe is None: method={method!r} needs probe images")
    if not tol >= 0:
        raise ValueError(f"tol={tol} must be >= 0")
    suspect, owner = _on_cpu(suspect), _on_cpu(owner)      # a model mid-training may sit on a GPU
    prep = _owner_side(owner, ignore)
    go, shape, owner_factors, masks, ref = prep.groups, prep.shape, prep.factors, prep.masks, prep.ref
    try:
        gs = units.describe(suspect, shape)
    except (ValueError, RuntimeError) as e:
        raise ValueError(f"suspect: not a zero-cost transform of the owner's architecture ({e})") from e
    _check_architecture(suspect, owner, go, gs)
    start = [g.size for g in gs]
    work = copy.deepcopy(suspect).eval()
    canonicalise(work, gs)
    removed = [[0, 0] for _ in go]
    for sweep in range(2 * len(go)):         # forward, backward, ...: a dummy read only by dummies goes once they do
        if all(a.size == b.size for a, b in zip(go, gs)):
            break
        progress = False
        for gi in (range(len(go)) if sweep % 2 == 0 else reversed(range(len(go)))):
            if gs[gi].size > go[gi].size:
                merged, dropped = _dedupe(work, gs[gi], gs[gi].size - go[gi].size, tol)
                removed[gi][0] += merged
                removed[gi][1] += dropped
                if merged + dropped:
                    progress = True
                    gs = units.describe(work, shape)
                    canonicalise(work, gs)
        if not progress:
            break
    for a, b, n0 in zip(go, gs, start):
        if a.size != b.size:
            raise ValueError(f"suspect: not a zero-cost transform of the owner's architecture (group {a.name} keeps "
                             f"{b.size} of its {n0} units after removing dummies, the owner has {a.size})")
    report = AlignReport(method)
    perms = [torch.arange(g.size) for g in go]
    how = ["weights"] * len(go)
    if method in ("activations", "both"):
        x = D.to_float(probe)
        perms = _match_activations(ref, work, go, x)
        how = ["activations"] * len(go)
    if method in ("weights", "both"):
        report.rounds, changed = _match_weights(ref, work, go, perms, first_pass=method == "weights",
                                                max_rounds=max_rounds, seed=seed, masks=masks, memo=prep.memo)
        if method == "both":
            how = ["activations, then weights" if changed.get(i) else "activations" for i in range(len(go))]
    for gi, g in enumerate(gs):
        units.reindex(work, g, perms[gi])
    if masks:               # in the owner's coordinates now: scales matched without the secret positions
        canonicalise(work, go, masks)
        for (gi, si), f in prep.masked_factors.items():
            units.rescale(work, go[gi], go[gi].sites[si], 1 / f)
    for (gi, si), f in owner_factors.items():
        units.rescale(work, go[gi], go[gi].sites[si], 1 / f)
    out = copy.deepcopy(owner)
    out.load_state_dict(work.state_dict())
    out.eval()
    for gi, g in enumerate(go):
        report.groups.append(GroupAlignment(g.name, g.size, start[gi], removed[gi][0], removed[gi][1],
                                            how[gi] if g.size > 1 else "single unit",
                                            int((perms[gi] != torch.arange(g.size)).sum())))
    if not measure:
        return out, report
    x = D.to_float(probe) if probe is not None else torch.rand(8, *shape, generator=torch.Generator().manual_seed(0))
    was = suspect.training
    with torch.no_grad():
        before, after = suspect.eval()(x), out(x)
    suspect.train(was)
    report.max_logit_change = float((after - before).abs().max())
    report.logit_scale = float(before.abs().max())
    report.distance = certspace.distance(out, owner)
    return out, report


def aligned(suspect: Trained, owner: Trained, *, probe: torch.Tensor | None = None, method: str = "weights",
            seed: int = 0) -> Trained:
    """:func:`align` for the models of the cache: the suspect in the owner's coordinates, with a
    record whose hash names (suspect, owner, method, probe), so that what is computed on it (votes,
    accuracies) is cached like any attack's; ``record["alignment"]`` is the :class:`AlignReport`.
    Alignment is a deterministic function of the two files (and the probe): a certificate read on
    the aligned suspect covers every file whose aligned form lies within its radius."""
    model, report = align(suspect.model, owner.model, probe=probe, method=method, seed=seed)
    key = aligned_key(suspect, owner, probe=probe, method=method, seed=seed)
    return Trained(model, {"key": key, "hash": key_hash(key), "alignment": report})


def aligned_key(suspect: Trained, owner: Trained, *, probe: torch.Tensor | None = None, method: str = "weights",
                seed: int = 0) -> dict:
    """The cache key of :func:`aligned`'s result, known without aligning (what is cached on the
    aligned model is found without recomputing it)."""
    return dict(step="align", suspect=suspect.hash, owner=owner.hash, method=method, seed=seed,
                probe=None if probe is None else D.digest(probe))


def summary(report: AlignReport) -> str:
    """One line on what :func:`align` did: units moved, dummies removed, rounds."""
    moved = sum(g.moved for g in report.groups)
    merged = sum(g.merged for g in report.groups)
    dropped = sum(g.dropped for g in report.groups)
    parts = [f"{moved} of {sum(g.units for g in report.groups)} units moved ({report.method})"]
    if merged or dropped:
        parts.append(f"{merged + dropped} dummy units removed ({merged} merged, {dropped} dropped)")
    return "; ".join(parts)
