"""One verdict for every scheme: what verifying a suspect model says.

Adi et al. (trigger-set accuracy against a binomial threshold), Le Merrer et al. (key mismatches
against θ), IPCert and Bansal et al. (a smoothed matching rate with a certified radius) and
Tartaglione et al. (correlation of the extracted weights with the payload) all return a
:class:`Verdict`.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """``score`` (higher means more of the watermark) against ``threshold``: the model is claimed
    when ``score >= threshold``.

    ``p_value``: the chance of a score at least this high under the scheme's null model (a model
    that never saw the watermark), where the scheme defines one. ``certified_radius``: the ℓ2
    distance in the certified space within which any model provably still passes, where the
    scheme certifies. ``n``: the size of the trigger set, key or IP set the score is read on.
    """

    scheme: str
    score: float
    threshold: float
    p_value: float | None = None
    certified_radius: float | None = None
    n: int | None = None
    alignment: str | None = None

    @property
    def passed(self) -> bool:
        return self.score >= self.threshold

    @property
    def matches(self) -> int | None:
        """For a score that is a fraction of ``n`` points: how many points matched."""
        return None if self.n is None else int(round(self.score * self.n))

    def describe(self) -> str:
        extra = "".join([f", p = {self.p_value:.2g}" if self.p_value is not None else "",
                         f", certified to R = {self.certified_radius:.3g}"
                         if self.certified_radius is not None else "",
                         f"; aligned: {self.alignment}" if self.alignment is not None else ""])
        return (f"{self.scheme}: score {self.score:.3g} vs threshold {self.threshold:.3g} → "
                f"{'claimed' if self.passed else 'not claimed'}{extra}")
