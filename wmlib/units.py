"""The hidden units of a model and the edits that act on them without changing its function.

A *unit* is one channel (or feature) between the input and the head's output. :func:`describe`
traces the model (``torch.fx``) and follows every channel from the layer that makes it to every
layer that reads it, so that each unit is known by the tensor slices it owns: the rows of its
producing conv / linear weight and bias (role ``out``), its entries in the batch norms it passes
through (``bn``: weight, bias, running_mean, running_var) and the columns of every consumer
(``in``; a ``Linear`` after a flatten reads a block of H·W columns per channel). Channels that a
residual ``add`` joins are one unit; units that own the same tensors are one :class:`Group`, the
permutation groups of Git Re-Basin (Ainsworth et al. 2023, §3: all blocks adding into one
residual stream share a permutation). In ``resnet32`` the option-A shortcut (2x subsampling,
channels zero-padded half before, half after) writes a stage's stream into the middle channels of
the next stage's stream, so a stream unit also owns those middle positions downstream: one group
holds the first stage's 16 units, one the 16 channels the second stage adds on either side, one the
third stage's 32 outer channels (the entries' ``positions`` say where each unit sits).

Which units may be positively rescaled (Li & Wang 2023, the linear functionality equivalence
attack) is found by the same walk: a :class:`Site` is a producer whose output reaches its
consumers through positively homogeneous operations only (ReLU, max / average pooling, dropout,
flatten, residual adds of the same site, zero padding); its units may be multiplied by c > 0 if
every linear consumer divides its columns by c and every batch norm that reads them absorbs c in
its statistics (running_mean × c, running_var + ε × c², exact in eval mode). A batch norm's own
weight and bias produce a new site (its output scaled, its readers divide).

The head's outputs and the input channels are never units. Models the walk does not know (the
recurrent IRNNs: ``nn.RNN`` mixes units through time) raise a ``ValueError`` naming the layer.
"""
from __future__ import annotations

import functools
import operator
from dataclasses import dataclass

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp
from torch.nn import functional as F

from .data import DATASETS
from .models import Normalize

ROLES = ("out", "in", "bn")
_BN = (nn.BatchNorm1d, nn.BatchNorm2d)
_PASS_MODULES = (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Dropout, nn.Dropout2d, nn.Identity)
_PASS_FUNCTIONS = (torch.relu, F.relu, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.dropout)
_KNOWN = (nn.Conv2d, nn.Linear, nn.Flatten, Normalize, *_BN, *_PASS_MODULES)


@dataclass(frozen=True)
class Entry:
    """The slice of ``module.tensor`` a group's units index along ``axis``: unit k owns the
    ``block`` consecutive positions starting at ``positions[k]·block``."""

    module: str
    tensor: str
    axis: int
    role: str
    block: int
    positions: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"{self.module}.{self.tensor}"

    @property
    def key(self) -> tuple:
        return (self.module, self.tensor, self.axis, self.role, self.block)

    def index(self, units: torch.Tensor | None = None) -> torch.Tensor:
        """Positions along ``axis`` of the given units (all, in order, by default); not to be
        written to (the full index is shared)."""
        full = _index(self.positions, self.block)
        return full if units is None else full.view(-1, self.block)[units].reshape(-1)


@functools.lru_cache(maxsize=4096)
def _index(positions: tuple[int, ...], block: int) -> torch.Tensor:
    pos = torch.tensor(positions, dtype=torch.long)
    return (pos[:, None] * block + torch.arange(block)).reshape(-1)


@dataclass(frozen=True)
class Site:
    """A positive rescaling of a group's units: entries ``out`` × c, ``into`` ÷ c, and batch norms
    (``means`` / ``variances``: their running statistics) absorb c. Indices into ``Group.entries``.
    ``kind``: "batchnorm" when batch norms absorb it, "relu" otherwise."""

    out: tuple[int, ...]
    into: tuple[int, ...]
    means: tuple[int, ...]
    variances: tuple[int, ...]

    @property
    def kind(self) -> str:
        return "batchnorm" if self.means else "relu"


@dataclass(frozen=True)
class Group:
    """Units that may be permuted together; ``whole``: every entry spans its whole axis in unit
    order, so units can also be added or removed (not so for the option-A streams)."""

    name: str
    size: int
    entries: tuple[Entry, ...]
    sites: tuple[Site, ...]
    whole: bool
    taps: tuple[tuple[str, tuple[int, ...], int], ...]
    """(fx node, positions, block) of every traced value whose dimension 1 carries these units."""


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, Normalize) or super().is_leaf_module(m, qualname)


class _Classes:
    """Union-find over channel slots, each class carrying a 'fixed' flag (input, head output)."""

    def __init__(self):
        self.parent, self.fixed = [], []

    def new(self, n: int, fixed: bool = False) -> list[int]:
        start = len(self.parent)
        self.parent += range(start, start + n)
        self.fixed += [fixed] * n
        return list(range(start, start + n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[max(a, b)] = min(a, b)
            self.fixed[min(a, b)] |= self.fixed[max(a, b)]


def input_shape(model: nn.Module) -> tuple[int, ...]:
    """(C, H, W) of the images ``model`` takes: C from its normalisation, H = W the size of the
    first known dataset with C channels on which the model runs."""
    norm = getattr(model, "normalize", None)
    if not isinstance(norm, Normalize):
        raise ValueError(f"model={type(model).__name__} has no Normalize as .normalize: not a registry Classifier")
    c = norm.mean.numel()
    sizes = sorted({d.size for d in DATASETS.values() if d.channels == c})
    was = model.training
    model.eval()
    try:
        for size in sizes:
            try:
                with torch.no_grad():
                    model(torch.zeros(1, c, size, size))
                return (c, size, size)
            except RuntimeError:
                continue
    finally:
        model.train(was)
    raise ValueError(f"model={type(model).__name__} runs on none of the known input sizes {sizes} with {c} channels")


def _unknown_layer(model: nn.Module) -> str | None:
    for path, m in model.named_modules():
        if isinstance(m, _KNOWN):
            continue
        if not list(m.children()) or isinstance(m, nn.RNNBase):
            owner = path.rpartition(".")[0]
            inside = f", inside {type(model.get_submodule(owner)).__name__} ({owner})" if owner else ""
            return f"{path} ({type(m).__name__}{inside})"
    return None


def _graph(model: nn.Module) -> fx.GraphModule:
    bad = _unknown_layer(model)
    if bad:
        raise ValueError(f"cannot describe the units of this {type(model).__name__}: {bad} is not a layer the "
                         f"walk knows (known: {sorted({t.__name__ for t in _KNOWN})})")
    try:
        return fx.GraphModule(model, _Tracer().trace(model))
    except Exception as e:  # noqa: BLE001  (fx raises many kinds)
        raise ValueError(f"cannot describe the units of this {type(model).__name__}: torch.fx cannot trace it ({e})") from e


_DESCRIBED: dict = {}      # architecture signature -> groups (they hold names and indices only)


def describe(model: nn.Module, shape: tuple[int, ...] | None = None) -> list[Group]:
    """The unit groups of ``model`` in the order the forward pass first meets them (module docstring).
    ``shape``: the input's (C, H, W), found by :func:`input_shape` if not given. Remembered per
    architecture (class, modules, tensor shapes, input shape): alignment asks many times."""
    shape = tuple(shape or input_shape(model))
    sig = (type(model), tuple((n, type(m)) for n, m in model.named_modules()),
           tuple((k, tuple(v.shape)) for k, v in model.state_dict().items()), shape)
    if sig not in _DESCRIBED:
        if len(_DESCRIBED) >= 64:
            _DESCRIBED.clear()
        _DESCRIBED[sig] = _describe(model, shape)
    return list(_DESCRIBED[sig])


def _describe(model: nn.Module, shape: tuple[int, ...]) -> list[Group]:
    gm = _graph(model)
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(torch.zeros(1, *shape))
    finally:
        model.train(was)
    return _Walk(model, gm).groups()


@torch.no_grad()
def values(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every traced value of ``model`` on inputs ``x`` in eval mode, by fx node name (the names
    :attr:`Group.taps` refers to), each a copy."""
    gm = _graph(model)
    out = {}

    class Record(fx.Interpreter):
        def run_node(self, n):
            result = super().run_node(n)
            if isinstance(result, torch.Tensor):
                out[n.name] = result.clone()       # an in-place ReLU next must not overwrite it
            return result

    was = model.training
    model.eval()
    try:
        Record(gm).run(x)
    finally:
        model.train(was)
    return out


class _Walk:
    """One pass over the traced graph: each value's channels as (unit class, scale class) slots."""

    def __init__(self, model: nn.Module, gm: fx.GraphModule):
        self.model, self.gm = model, gm
        self.perm, self.scale = _Classes(), _Classes()
        self.space: dict[str, tuple[list[int], list[int], int]] = {}
        self.slices: list[tuple[int, tuple, int]] = []      # (unit class, entry key, position)
        self.sites: list[tuple[int, int, str, tuple]] = []  # (unit class, scale class, out/into/mean/var, entry key)
        self.calls: dict[str, int] = {}
        for node in gm.graph.nodes:
            self._visit(node)

    def _fail(self, node: fx.Node, what: str):
        raise ValueError(f"cannot describe the units of this {type(self.model).__name__}: {what} at {node.format_node()}")

    def _shape(self, node: fx.Node) -> tuple[int, ...]:
        return tuple(node.meta["tensor_meta"].shape)

    def _new(self, node: fx.Node, n: int, fixed: bool = False, block: int = 1):
        self.space[node.name] = (self.perm.new(n, fixed), self.scale.new(n, fixed), block)

    def _record(self, path: str, tensor: str, axis: int, role: str, block: int, ids: list[int], scales: list[int], site: str | None):
        key = (path, tensor, axis, role, block)
        for k, (p, s) in enumerate(zip(ids, scales)):
            self.slices.append((p, key, k))
            if site:
                self.sites.append((p, s, site, key))

    def _visit(self, node: fx.Node):
        if node.op == "placeholder":
            return self._new(node, self._shape(node)[1], fixed=True)
        if node.op == "output":
            ids, scales, _ = self.space[node.args[0].name]
            for i in ids:
                self.perm.fixed[self.perm.find(i)] = True
            for s in scales:
                self.scale.fixed[self.scale.find(s)] = True
            return None
        if node.op == "call_module":
            return self._module(node, self.gm.get_submodule(node.target))
        if node.op == "call_function" and node.target in (operator.add, torch.add):
            return self._add(node)
        if node.op == "call_function" and node.target is F.pad:
            return self._pad(node)
        if node.op == "call_function" and node.target is operator.getitem:
            return self._getitem(node)
        if (node.op == "call_function" and node.target is torch.flatten) or (node.op == "call_method" and node.target == "flatten"):
            return self._flatten(node, node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0))
        if (node.op == "call_function" and node.target in _PASS_FUNCTIONS) or (node.op == "call_method" and node.target == "relu"):
            self.space[node.name] = self.space[node.args[0].name]
            return None
        self._fail(node, f"an operation the walk does not know ({node.op} {node.target})")

    def _module(self, node: fx.Node, m: nn.Module):
        path = node.target
        if isinstance(m, (nn.Conv2d, nn.Linear, *_BN)):
            self.calls[path] = self.calls.get(path, 0) + 1
            if self.calls[path] > 1:
                self._fail(node, f"{path} is called twice (shared weights)")
        if isinstance(m, Normalize):
            return self._new(node, self._shape(node)[1], fixed=True)
        if isinstance(m, _PASS_MODULES):
            self.space[node.name] = self.space[node.args[0].name]
            return None
        if isinstance(m, nn.Flatten):
            return self._flatten(node, m.start_dim)
        ids, scales, block = self.space[node.args[0].name]
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if isinstance(m, nn.Conv2d) and (m.groups != 1 or block != 1):
                self._fail(node, "a grouped convolution")
            if m.weight.shape[1] != len(ids) * block:
                self._fail(node, f"{m.weight.shape[1]} input columns for {len(ids)} channels × {block}")
            self._record(path, "weight", 1, "in", block, ids, scales, "into")
            self._new(node, m.weight.shape[0])
            out_ids, out_scales, _ = self.space[node.name]
            self._record(path, "weight", 0, "out", 1, out_ids, out_scales, "out")
            if m.bias is not None:
                self._record(path, "bias", 0, "out", 1, out_ids, out_scales, "out")
            return None
        if isinstance(m, _BN):
            if m.running_mean is None or m.running_var is None:
                self._fail(node, f"{path} has no running statistics")
            self._record(path, "running_mean", 0, "bn", block, ids, scales, "mean")
            self._record(path, "running_var", 0, "bn", block, ids, scales, "var")
            self.space[node.name] = (ids, self.scale.new(len(ids)), block)
            out_scales = self.space[node.name][1]
            for t in ("weight", "bias"):
                if getattr(m, t) is not None:
                    self._record(path, t, 0, "bn", block, ids, out_scales, "out")
            return None
        self._fail(node, f"a layer the walk does not know ({type(m).__name__})")

    def _add(self, node: fx.Node):
        a, b = node.args[:2]
        if not (isinstance(a, fx.Node) and isinstance(b, fx.Node)) or len(node.args) > 2 or node.kwargs:
            self._fail(node, "an addition that is not of two traced values")
        (ia, sa, ba), (ib, sb, bb) = self.space[a.name], self.space[b.name]
        if len(ia) != len(ib) or ba != bb:
            self._fail(node, "an addition of values with different channels")
        for x, y in zip(ia, ib):
            self.perm.union(x, y)
        for x, y in zip(sa, sb):
            self.scale.union(x, y)
        self.space[node.name] = (ia, sa, ba)

    def _pad(self, node: fx.Node):
        x, pad = node.args[0], tuple(node.args[1])
        value = node.kwargs.get("value", node.args[3] if len(node.args) > 3 else 0) or 0
        mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
        ids, scales, block = self.space[x.name]
        ndim = len(self._shape(x))
        if mode != "constant" or value != 0:
            self._fail(node, "a padding that is not by zeros")
        if len(pad) < 2 * (ndim - 1):             # spatial padding only: channels untouched
            self.space[node.name] = (ids, scales, block)
            return None
        if len(pad) > 2 * (ndim - 1) or block != 1:
            self._fail(node, "a padding of the batch dimension")
        before, after = pad[-2], pad[-1]
        self.space[node.name] = (self.perm.new(before) + ids + self.perm.new(after),
                                 self.scale.new(before) + scales + self.scale.new(after), 1)
        return None

    def _getitem(self, node: fx.Node):
        x, idx = node.args
        idx = idx if isinstance(idx, tuple) else (idx,)
        if len(idx) < 2 or any(i != slice(None) for i in idx[:2]):
            self._fail(node, "an indexing that selects channels")
        self.space[node.name] = self.space[x.name]

    def _flatten(self, node: fx.Node, start: int):
        ids, scales, block = self.space[node.args[0].name]
        shape = self._shape(node.args[0])
        if start != 1:
            self._fail(node, "a flatten that does not keep the batch dimension alone")
        spatial = 1
        for s in shape[2:]:
            spatial *= s
        self.space[node.name] = (ids, scales, block * spatial)

    # ------------------------------------------------------------------ from classes to groups
    def groups(self) -> list[Group]:
        order: dict[tuple, int] = {}
        units: dict[int, dict[tuple, int]] = {}
        for p, key, pos in self.slices:
            order.setdefault(key, len(order))
            root = self.perm.find(p)
            if self.perm.fixed[root]:
                continue
            seen = units.setdefault(root, {})
            if seen.setdefault(key, pos) != pos:
                raise ValueError(f"cannot describe the units of this {type(self.model).__name__}: "
                                 f"one unit sits twice in {key[0]}.{key[1]}")
        by_signature: dict[tuple, list[int]] = {}
        for root, seen in units.items():
            sig = tuple(sorted(seen, key=order.__getitem__))
            by_signature.setdefault(sig, []).append(root)
        site_of = self._site_records()
        taps = self._taps()
        out, names = [], set()
        for sig, roots in sorted(by_signature.items(), key=lambda kv: order[kv[0][0]]):
            roots.sort(key=lambda r: units[r][sig[0]])
            entries = tuple(Entry(*key, tuple(units[r][key] for r in roots)) for key in sig)
            whole = all(e.positions == tuple(range(len(roots)))
                        and self._size(e) == len(roots) * e.block for e in entries)
            name = f"{entries[0].module}"
            while name in names:
                name += "'"
            names.add(name)
            members = set(roots)
            out.append(Group(name, len(roots), entries, self._group_sites(roots, entries, site_of), whole,
                             tuple((n, tuple(pos[r] for r in roots), block) for n, pos, block in taps
                                   if members <= pos.keys())))
        return out

    def _size(self, e: Entry) -> int:
        return getattr(self.model.get_submodule(e.module), e.tensor).shape[e.axis]

    def _taps(self):
        out = []
        for name, (ids, _, block) in self.space.items():
            pos = {}
            for k, i in enumerate(ids):
                pos.setdefault(self.perm.find(i), k)
            out.append((name, pos, block))
        return out

    def _site_records(self) -> dict[int, dict[int, set]]:
        """unit class → scale class → {(kind, entry key)}."""
        out: dict[int, dict[int, set]] = {}
        for p, s, kind, key in self.sites:
            root = self.scale.find(s)
            if not self.scale.fixed[root]:
                out.setdefault(self.perm.find(p), {}).setdefault(root, set()).add((kind, key))
        return out

    def _group_sites(self, roots, entries, site_of) -> tuple[Site, ...]:
        index = {e.key: i for i, e in enumerate(entries)}
        memo: dict[frozenset, tuple] = {}

        def signature(records: set) -> tuple:
            f = frozenset(records)
            if f not in memo:
                memo[f] = tuple((k, tuple(sorted(index[key] for kind, key in f if kind == k)))
                                for k in ("out", "into", "mean", "var"))
            return memo[f]

        per_unit = [{signature(records) for records in site_of.get(r, {}).values()} for r in roots]
        common = set.intersection(*per_unit) if per_unit else set()
        sites = []
        for sig in sorted(common):
            d = dict(sig)
            if d["out"] and (d["into"] or d["mean"]):
                sites.append(Site(d["out"], d["into"], d["mean"], d["var"]))
        return tuple(sorted(sites, key=lambda s: min(s.out)))


# ----------------------------------------------------------------------------- edits on units
def tensor(model: nn.Module, entry: Entry) -> torch.Tensor:
    return getattr(model.get_submodule(entry.module), entry.tensor)


def unit_slices(model: nn.Module, entry: Entry, units: torch.Tensor | None = None) -> torch.Tensor:
    """The entry's tensor restricted to the given units, as (units, everything else)."""
    t = tensor(model, entry).detach()
    n = len(entry.positions) if units is None else len(units)
    sel = t.index_select(entry.axis, entry.index(units)).movedim(entry.axis, 0)
    return sel.reshape(n, -1)


@torch.no_grad()
def set_unit_slices(model: nn.Module, entry: Entry, units: torch.Tensor, slices: torch.Tensor) -> None:
    """Write ``slices`` (units, everything else), as :func:`unit_slices` reads them, back in place."""
    t = tensor(model, entry).detach()
    idx = entry.index(units)
    rest = list(t.movedim(entry.axis, 0).shape[1:])
    new = slices.to(t.dtype).reshape(len(idx), *rest).movedim(0, entry.axis)
    _put(model, entry, t.index_copy(entry.axis, idx, new))


def _put(model: nn.Module, entry: Entry, new: torch.Tensor) -> None:
    module = model.get_submodule(entry.module)
    old = getattr(module, entry.tensor)
    if isinstance(old, nn.Parameter):
        setattr(module, entry.tensor, nn.Parameter(new.contiguous(), requires_grad=old.requires_grad))
    else:
        setattr(module, entry.tensor, new.contiguous())


def fix_widths(model: nn.Module, paths) -> None:
    """Shape attributes of resized layers, so that they print and rebuild as their tensors say."""
    for path in set(paths):
        m = model.get_submodule(path)
        if isinstance(m, nn.Conv2d):
            m.out_channels, m.in_channels = m.weight.shape[0], m.weight.shape[1] * m.groups
        elif isinstance(m, nn.Linear):
            m.out_features, m.in_features = m.weight.shape
        elif isinstance(m, _BN):
            m.num_features = m.running_mean.numel()


@torch.no_grad()
def reindex(model: nn.Module, group: Group, index: torch.Tensor, extra: dict[int, torch.Tensor] | None = None) -> None:
    """Unit k of ``group`` becomes the former unit ``index[k]``, in place. With ``extra`` (entry
    index → slices of new units along the entry's axis, ``block`` positions each) the new units
    are appended first and ``index`` may name them (n, n+1, ...); a group that is not ``whole``
    can only be permuted."""
    index = torch.as_tensor(index, dtype=torch.long)
    if not group.whole and (extra or sorted(index.tolist()) != list(range(group.size))):
        raise ValueError(f"group {group.name} spans part of an axis (a zero-padded shortcut): units can only be permuted")
    for i, e in enumerate(group.entries):
        t = tensor(model, e).detach()
        if group.whole:
            if extra:
                t = torch.cat([t, extra[i].to(t.dtype)], e.axis)
                e = Entry(e.module, e.tensor, e.axis, e.role, e.block, tuple(range(t.shape[e.axis] // e.block)))
            _put(model, e, t.index_select(e.axis, e.index(index)))
        else:
            where = e.index()
            _put(model, e, t.index_copy(e.axis, where, t.index_select(e.axis, e.index(index))))
    fix_widths(model, [e.module for e in group.entries])


@torch.no_grad()
def rescale(model: nn.Module, group: Group, site: Site, c: torch.Tensor) -> None:
    """Multiply the units of ``group`` by ``c`` (> 0, one per unit) at ``site``, in place: the
    function is unchanged (module docstring)."""
    c = torch.as_tensor(c, dtype=torch.float64)
    if c.shape != (group.size,) or not bool((c > 0).all()):
        raise ValueError(f"c must hold {group.size} positive factors")

    def apply(i, f):
        e = group.entries[i]
        t = tensor(model, e).detach()
        shape = [1] * t.ndim
        shape[e.axis] = -1
        factors = c.repeat_interleave(e.block).view(shape)
        if group.whole:
            _put(model, e, f(t, factors))
        else:
            idx = e.index()
            _put(model, e, t.index_copy(e.axis, idx, f(t.index_select(e.axis, idx), factors)))

    for i in site.out:
        apply(i, lambda x, f: (x.double() * f).to(x.dtype))
    for i in site.into:
        apply(i, lambda x, f: (x.double() / f).to(x.dtype))
    for i in site.means:
        apply(i, lambda x, f: (x.double() * f).to(x.dtype))
    for i in site.variances:
        eps = model.get_submodule(group.entries[i].module).eps
        apply(i, lambda x, f, eps=eps: ((x.double() + eps) * f ** 2 - eps).to(x.dtype))
