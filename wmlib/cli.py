"""``wmbook``: check a suspect model file against an owner's key, or rehearse an attack on a file.

    wmbook verify --key KEY --model SUSPECT [--json] [--no-align] [--seed N] [--device cpu|cuda]
    wmbook attack --key KEY --model IN --attack NAME --out OUT [--seed N] [...]

``verify`` prints the scheme's verdict in one line (claimed or not, score against threshold,
p-value or certified radius where the scheme defines one, what alignment did, the seed of the
noise draws) or, with ``--json``, the verdict as JSON. Exit status: 0 claimed, 1 not claimed,
2 bad input (one line on stderr naming what is wrong). Keys: :mod:`wmlib.keys`; model files
(safetensors or a PyTorch state dict, never unpickled as code): :mod:`wmlib.modelfile`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict

CLAIMED, NOT_CLAIMED, BAD_INPUT = 0, 1, 2

ATTACKS = ("permute", "scale", "rescale-bn", "dummy-zero", "dummy-clique", "dummy-split", "zero-cost",
           "prune", "quantize", "fine-tune")
"""What ``wmbook attack`` applies (:mod:`wmlib.attacks`): the zero-cost edits (each and composed),
magnitude pruning (``--rate``), quantisation (``--bits``) and fine-tuning of all layers (FTAL,
``--epochs`` at ``--lr`` on ``--n`` images of the dataset's test split, which the owner did not train on)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):                      # one line and exit 2, like every bad input here
        print(f"wmbook {self.prog.split()[-1]}: {message}", file=sys.stderr)
        raise SystemExit(BAD_INPUT)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="wmbook", description="Verify a suspect model file against an owner's key (wmbook).")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    v = sub.add_parser("verify", help="is this model file the owner's? (exit 0 claimed, 1 not, 2 bad input)")
    v.add_argument("--key", required=True, help="the owner's key folder (written by wmlib.keys.write)")
    v.add_argument("--model", required=True, help="the suspect's file: .safetensors or a PyTorch state dict")
    v.add_argument("--json", action="store_true", help="print the verdict as JSON")
    v.add_argument("--no-align", action="store_true",
                   help="white-box schemes: read the file as it is (the paper's verification), not aligned first")
    v.add_argument("--seed", type=int, default=0, help="seed of the noise draws (smoothed schemes; default 0)")
    v.add_argument("--device", choices=("cpu", "cuda"), default=None, help="where to compute (default: cuda if any)")
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    a = sub.add_parser("attack", help="apply an attack of wmlib.attacks to a model file and write the result")
    a.add_argument("--key", required=True, help="a key folder (for the architecture and dataset)")
    a.add_argument("--model", required=True, help="the model file to attack")
    a.add_argument("--attack", required=True, choices=ATTACKS)
    a.add_argument("--out", required=True, help="where to write the attacked file (.safetensors or .pt)")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--rate", type=float, default=0.5, help="prune: the fraction of weights set to zero")
    a.add_argument("--bits", type=int, default=4, help="quantize: bits per weight")
    a.add_argument("--epochs", type=int, default=1, help="fine-tune: epochs")
    a.add_argument("--lr", type=float, default=0.01, help="fine-tune: learning rate")
    a.add_argument("--n", type=int, default=1000, help="fine-tune: images")
    return p


def _fail(command: str, message: str) -> int:
    print(f"wmbook {command}: {message.splitlines()[0] if message else 'failed'}", file=sys.stderr)
    return BAD_INPUT


def _device(name: str | None) -> None:
    if name is None:
        return
    import torch
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device on this machine; accepted values here: ['cpu']")
    os.environ["WMLIB_DEVICE"] = name


def _verify(args) -> int:
    from . import keys, modelfile
    _device(args.device)
    key = keys.read(args.key)
    model = modelfile.load(args.model, key.architecture, key.dataset, key.num_classes)
    verdict = keys.verify(key, model, align=not args.no_align, seed=args.seed,
                          progress=not (args.quiet or args.json))
    if args.json:
        print(json.dumps({**asdict(verdict), "claimed": verdict.passed, "seed": args.seed,
                          "aligned": not args.no_align and key.scheme in keys.WHITE_BOX,
                          "key": str(args.key), "model": str(args.model)}))
    else:
        seed = f"; noise seed {args.seed}" if key.scheme in ("bansal", "ipcert") else ""
        print(f"{'CLAIMED' if verdict.passed else 'not claimed'} — {verdict.describe()}{seed}")
    return CLAIMED if verdict.passed else NOT_CLAIMED


def _attack(args) -> int:
    from . import attacks, keys, modelfile
    from . import data as D
    from .align import file_stamp
    from .train import Trained
    key = keys.read(args.key)
    model = modelfile.load(args.model, key.architecture, key.dataset, key.num_classes)
    h = file_stamp(model)[:16]
    base = Trained(model, {"key": {"file": h}, "hash": h})
    s = args.seed
    make = {"permute": lambda: attacks.permute_units(base, s), "scale": lambda: attacks.scale_units(base, s),
            "rescale-bn": lambda: attacks.rescale_batchnorm(base, None, seed=s),
            "zero-cost": lambda: attacks.zero_cost_edit(base, s),
            "prune": lambda: attacks.prune(base, args.rate), "quantize": lambda: attacks.quantize(base, args.bits),
            "fine-tune": lambda: attacks.fine_tune(base, "FTAL", D.load(key.dataset, "test").head(args.n),
                                                   epochs=args.epochs, lr=args.lr, seed=s)}
    for kind in attacks.DUMMY_KINDS:
        make[f"dummy-{kind}"] = lambda kind=kind: attacks.add_dummy_units(base, kind, seed=s)
    out = make[args.attack]()
    path = modelfile.save(out.model, args.out)
    change = out.record.get("max_logit_change")
    extra = f" (largest logit change {change:.2g})" if change is not None else ""
    print(f"wrote {path}: {args.attack}{extra}")
    return 0


def main(argv=None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:                 # --help (0) or a parse error, already printed in one line (2)
        return int(e.code or 0)
    from . import keys, modelfile
    try:
        return {"verify": _verify, "attack": _attack}[args.command](args)
    except (keys.BadKey, modelfile.BadModelFile) as e:
        return _fail(args.command, str(e))
    except ValueError as e:                 # a setting out of range, an architecture the edit cannot describe
        return _fail(args.command, str(e))


def rehearse(folder, key, suspects: dict, *, seed: int = 0):
    """The worked example of the "Verify a model" page: write ``key`` to ``folder/key`` and each
    suspect (name → model) to ``folder/<name>.safetensors``, then run ``wmbook verify`` on each as a
    user would. Returns (a table: suspect, exit status, claimed, the printed line; the terminal
    session as text, paths relative to ``folder``)."""
    import contextlib
    import io
    from pathlib import Path

    import pandas as pd

    from . import keys, modelfile
    folder = Path(folder)
    keys.write(key, folder / "key")
    rows, session = [], [f"$ cd {folder.name}"]
    for name, model in suspects.items():
        path = modelfile.save(model, folder / f"{name}.safetensors")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["verify", "--key", str(folder / "key"), "--model", str(path), "--seed", str(seed), "--quiet"])
        line = (out.getvalue() or err.getvalue()).strip()
        session += [f'$ wmbook verify --key key --model {path.name} --seed {seed} --quiet; echo "exit $?"', line,
                    f"exit {code}"]
        rows.append({"suspect": name, "exit status": code, "claimed": code == CLAIMED, "wmbook verify says": line})
    return pd.DataFrame(rows).set_index("suspect"), "\n".join(session)


REHEARSAL_EXPECTED = {"owner": True, "stolen": True, "independent": False}
"""What the worked example should find: the owner's file and the stolen copy claimed, the independent model not."""


def rehearsal_finding(table) -> str:
    """The worked example's outcome in words, from :func:`rehearse`'s table: which files were claimed,
    and whether that is right (the owner's file and the stolen copy claimed, the independent model not)."""
    want = REHEARSAL_EXPECTED
    claimed = [n for n, c in table["claimed"].items() if c]
    wrong = [n for n, c in table["claimed"].items() if n in want and c != want[n]]
    if claimed:
        said = (f"`wmbook verify` claims {' and '.join(claimed)}"
                f"{'' if len(claimed) == len(table) else ', not ' + ' and '.join(n for n in table.index if n not in claimed)}")
    else:
        said = f"`wmbook verify` claims none of the {len(table)} files"
    return said + (": as it should." if not wrong else
                   f": wrong for {' and '.join(wrong)} at this profile (the session above says by how much).")


def rehearsal_checks(checks, table, *, asserted: bool) -> None:
    """The worked example's verdicts as checks: the owner's file and the stolen copy claimed, the
    independent model not; ``asserted`` from the ``cpu`` profile on (at ``smoke`` and in tiny runs,
    models trained for seconds, they are shown only)."""
    want = REHEARSAL_EXPECTED
    for name, claimed in table["claimed"].items():
        if name in want:
            checks.add(f"wmbook verify: the {name} file is {'claimed' if want[name] else 'not claimed'}",
                       bool(claimed) == want[name], "claimed" if claimed else "not claimed",
                       asserted=asserted)


def entry() -> None:
    """The console script."""
    raise SystemExit(main())


if __name__ == "__main__":
    entry()
