"""The statistics of a campaign's results, pure (no I/O), stdlib only (`statistics.NormalDist`).

Means per member (visits, spend, points cost): the variant's mean over the control's as a ratio,
with a delta-method interval on the ratio and Welch's unequal variances (normal approximation,
fine from the 30 members per arm we require). Shares (members who visited): Wilson score
intervals per arm and Newcombe's hybrid score interval (method 10) for the difference, in
percentage points. docs/engagement.md states the method; decision 0035 says why stdlib."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

CONFIDENCE = 0.95
MIN_MEMBERS = 30  # per arm, before any interval is called a finding
# The ratio's delta-method interval is only sound while the control's mean is itself well
# measured: beyond this relative standard error (e.g. 2 visits among 38 members) the interval
# spans thousands of percent, and "not enough data yet" is the honest answer.
MAX_CONTROL_RSE = 0.35


def z_for(confidence: float = CONFIDENCE) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


@dataclass(frozen=True)
class Moments:
    """n, Σx and Σx² of one arm's per-member values."""

    n: int
    total: float
    squares: float

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        """The sample variance (n − 1), never negative from rounding."""
        if self.n < 2:
            return 0.0
        return max(0.0, (self.squares - self.n * self.mean**2) / (self.n - 1))


@dataclass(frozen=True)
class Interval:
    estimate: float
    lo: float
    hi: float


def ratio_uplift(variant: Moments, control: Moments, z: float | None = None) -> Interval | None:
    """Relative uplift of the variant's mean over the control's (0.05 = +5 %), with its
    interval: var(R) ≈ var(m_v)/m_c² + m_v²·var(m_c)/m_c⁴ (delta method, independent arms).
    None when the control's mean is 0 or too uncertain (MAX_CONTROL_RSE)."""
    if variant.n < 2 or control.n < 2 or control.mean <= 0:
        return None
    z = z_for() if z is None else z
    mv, mc = variant.mean, control.mean
    var_mv, var_mc = variant.variance / variant.n, control.variance / control.n
    if math.sqrt(var_mc) / mc > MAX_CONTROL_RSE:
        return None
    ratio = mv / mc
    se = math.sqrt(var_mv / mc**2 + mv**2 * var_mc / mc**4)
    return Interval(ratio - 1, ratio - 1 - z * se, ratio - 1 + z * se)


def welch_difference(variant: Moments, control: Moments, z: float | None = None) -> Interval:
    """Difference of means with Welch's standard error (normal approximation)."""
    z = z_for() if z is None else z
    diff = variant.mean - control.mean
    se = math.sqrt(
        (variant.variance / variant.n if variant.n else 0.0)
        + (control.variance / control.n if control.n else 0.0)
    )
    return Interval(diff, diff - z * se, diff + z * se)


def wilson(successes: int, n: int, z: float | None = None) -> Interval:
    if n == 0:
        return Interval(0.0, 0.0, 1.0)
    z = z_for() if z is None else z
    p = successes / n
    denominator = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denominator
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def newcombe(s1: int, n1: int, s2: int, n2: int, z: float | None = None) -> Interval:
    """p1 − p2 with Newcombe's hybrid score interval (1998, method 10)."""
    a, b = wilson(s1, n1, z), wilson(s2, n2, z)
    d = a.estimate - b.estimate
    lo = d - math.sqrt((a.estimate - a.lo) ** 2 + (b.hi - b.estimate) ** 2)
    hi = d + math.sqrt((a.hi - a.estimate) ** 2 + (b.estimate - b.lo) ** 2)
    return Interval(d, lo, hi)


# --- plain-language verdicts ------------------------------------------------------------------

METRICS: dict[str, dict[str, str]] = {
    "visits": {"en": "visits", "ko": "방문 수", "zh": "到店次数"},
    "spend": {"en": "spend", "ko": "구매 금액", "zh": "消费金额"},
    "points_cost": {"en": "points cost", "ko": "포인트 비용", "zh": "积分成本"},
    "visit_rate": {
        "en": "the share of members who visited",
        "ko": "방문 회원 비율",
        "zh": "到店会员比例",
    },
}
UNITS = {"%": {"en": " %", "ko": "%", "zh": "%"}, "pp": {"en": " percentage points",
         "ko": "%p", "zh": "个百分点"}}  # fmt: skip

_TEXT = {
    "not_enough": {
        "en": "{arm}: not enough data yet",
        "ko": "{arm}: 아직 데이터가 충분하지 않습니다",
        "zh": "{arm}：数据尚不足",
    },
    "raised": {
        "en": "{arm} raised {metric} by {lo}–{hi}{unit} at {conf} % confidence",
        "ko": "{arm}은(는) {metric}을(를) {lo}–{hi}{unit} 높였습니다 (신뢰수준 {conf}%)",
        "zh": "{arm}使{metric}提高了{lo}–{hi}{unit}（{conf}%置信度）",
    },
    "lowered": {
        "en": "{arm} lowered {metric} by {lo}–{hi}{unit} at {conf} % confidence",
        "ko": "{arm}은(는) {metric}을(를) {lo}–{hi}{unit} 낮췄습니다 (신뢰수준 {conf}%)",
        "zh": "{arm}使{metric}降低了{lo}–{hi}{unit}（{conf}%置信度）",
    },
    "unclear": {
        "en": "{arm}: no clear difference in {metric} ({lo} to {hi}{unit}) at {conf} % confidence",
        "ko": "{arm}: {metric}에 뚜렷한 차이가 없습니다 ({lo} ~ {hi}{unit}, 신뢰수준 {conf}%)",
        "zh": "{arm}：{metric}无明显差异（{lo} 至 {hi}{unit}，{conf}%置信度）",
    },
}


def _fmt(x: float) -> str:
    text = f"{x:.1f}"
    return "0.0" if text == "-0.0" else text


def finding(interval: Interval | None) -> str:
    """raised | lowered | unclear | not_enough."""
    if interval is None:
        return "not_enough"
    if interval.lo > 0:
        return "raised"
    if interval.hi < 0:
        return "lowered"
    return "unclear"


def verdict(
    kind: str,
    *,
    arm: str,
    metric: str,
    interval: Interval | None,
    unit: str,
    language: str,
    confidence: float = CONFIDENCE,
) -> str:
    """One sentence. `interval` is a fraction (0.04 = 4 %, or 4 percentage points)."""
    lang = language if language in ("en", "ko", "zh") else "en"
    if kind == "not_enough" or interval is None:
        return _TEXT["not_enough"][lang].format(arm=arm)
    lo, hi = interval.lo * 100, interval.hi * 100
    if kind == "lowered":
        lo, hi = -hi, -lo
    return _TEXT[kind][lang].format(
        arm=arm, metric=METRICS[metric][lang], lo=_fmt(lo), hi=_fmt(hi),
        unit=UNITS[unit][lang], conf=_fmt(confidence * 100).removesuffix(".0"),
    )  # fmt: skip
