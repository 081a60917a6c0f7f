"""No page types a measured number by hand: every number in a page's prose comes from the executed
notebooks (glue, or the files the runner generates), so a rerun that changes a result changes the
page. What a page may still type: the papers' published values (the claims files), the settings of
a profile (``wmlib/papers``), the methods' constants, years, and references (Table 2, Eq. 3, §4.1,
ResNet-18, 28×28). The scanner strips glue, code, math, links and headings first."""
import dataclasses
import re
from pathlib import Path

import pytest

from wmlib import claims, papers, train
from wmlib.schemes import adi, bansal, frontier, ipcert, weights

BOOK = Path(__file__).resolve().parents[1] / "book"

STATED_IN_THE_PAPERS = {
    "lemerrer2020.md": {900},       # the paper trains its IRNN for 900 epochs (§4.1)
    "tartaglione2020.md": {38},     # the authors' 38×29 logo (their code)
    "bansal2022.md": {512, 101, 21},  # ResNet-18 widths 64–512; one trigger in 101; 21 noise levels
    "ipcert2023.md": {18},           # Table 2: fine-tuning and distillation move the weights by 15–18
}
"""Numbers a page quotes from a paper's text that no claim or setting carries."""

_STRIP = [r"(?s)```.*?```", r"(?s)~~~.*?~~~", r":::+\{[^\n]*\n", r"\{glue(?::[a-z]+)?\}`[^`]*`",
          r"\{(?:cite|doc|ref|numref|eq)\}`[^`]*`", r"`[^`]*`", r"(?s)\$\$.*?\$\$", r"\$[^$\n]*\$",
          r"\]\([^)]*\)", r"https?://\S+", r"^:[a-z-]+:[^\n]*$", r"^#[^\n]*$", r"(?s)<!--.*?-->"]
_REFERENCE = re.compile(r"(?:Tables?|Figs?\.|Figures?|Eqs?\.|Alg\.|Algorithm|§|panels?|Section|Lemma|Theorem|"
                        r"Appendix|step)\s*(?:[\d.]+\s*(?:[–,-]|and)\s*)*$")
_NUMBER = re.compile(r"(?<![\w.])(\d+(?:,\d{3})*(?:\.\d+)?)(?![\w])")


def _numbers(obj, out: set) -> set:
    """Every int and float inside a settings object (dataclasses, dicts, sequences)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            _numbers(getattr(obj, f.name), out)
    elif isinstance(obj, dict):
        for v in obj.values():
            _numbers(v, out)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            _numbers(v, out)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out.add(float(obj))
    return out


def allowed_numbers() -> set[float]:
    """Published values, every profile's settings, the methods' module constants and small counts."""
    out = {float(c.value) for pid in papers.PAPERS for c in claims.load(pid).values() if c.value is not None}
    for pid, p in {**papers.PAPERS, **papers.STUDIES}.items():
        for profile in ("smoke", "cpu", "paper"):
            for d in p.datasets(profile):
                _numbers(papers.settings(pid, profile, d), out)
    _numbers(train.TrainConfig(model="mlp", dataset="mnist", epochs=1), out)
    for module in (adi, bansal, frontier, ipcert, weights):
        _numbers({k: v for k, v in vars(module).items() if k.isupper()}, out)
    return out | {float(v) for v in range(11)} | {100.0}


def hand_typed(text: str, allowed: set[float]) -> list[tuple[str, str]]:
    """(number, context) for each number in ``text``'s prose that nothing generated or allowed explains."""
    for pattern in _STRIP:
        text = re.sub(pattern, " ", text, flags=re.M)
    found = []
    for m in _NUMBER.finditer(text):
        s, before, after = m.group(1), text[max(0, m.start() - 30):m.start()], text[m.end():m.end() + 1]
        v = float(s.replace(",", ""))
        if (1900 <= v <= 2100 and "." not in s) or _REFERENCE.search(before):
            continue
        if re.search(r"[A-Za-z]-$", before) or after == "×" or before.endswith("×"):   # ResNet-18, 28×28
            continue
        if v in allowed or round(v / 100, 6) in allowed or round(v * 100, 6) in allowed:  # 0.25 ↔ 25 %
            continue
        found.append((s, " ".join(text[max(0, m.start() - 50):m.end() + 20].split())))
    return found


@pytest.fixture(scope="module")
def allowed():
    return allowed_numbers()


PAGES = sorted(p.name for p in BOOK.glob("*.md"))


@pytest.mark.parametrize("page", PAGES)
def test_no_page_types_a_measured_number(page, allowed):
    extra = {float(v) for v in STATED_IN_THE_PAPERS.get(page, ())}
    found = hand_typed((BOOK / page).read_text(), allowed | extra)
    assert not found, f"{page} types numbers its records do not produce: {found}"


def test_the_scanner_flags_a_typed_measurement_and_passes_generated_text(allowed):
    typed = "With the authors' λ the robust model loses 3.57 points more on MNIST."
    assert [n for n, _ in hand_typed(typed, allowed)] == ["3.57"]
    generated = ("{glue:text}`../build/executed/x.ipynb::finding_valley:s` (Table 2, Eq. 3, §4.1; "
                 "ResNet-18 on 28×28 inputs, 2020) `x = 3.57` $\\sigma = 0.37$")
    assert hand_typed(generated, allowed) == []
    published = next(c.value for c in claims.load("adi2018").values() if c.value is not None and c.value > 10)
    assert hand_typed(f"the paper reports {published:g} %", allowed) == []
