"""The metric names a PromQL expression reads (enough PromQL for our dashboards and alerts)."""

from __future__ import annotations

import re

_KEYWORDS = {
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "rate",
    "irate",
    "increase",
    "deriv",
    "delta",
    "histogram_quantile",
    "clamp_min",
    "clamp_max",
    "absent",
    "scalar",
    "vector",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "topk",
    "bottomk",
    "abs",
    "time",
    "e",
}


def metric_names(expr: str) -> set[str]:
    """Series names used by `expr` (label matchers, groupings, ranges and strings removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        name = match.group(0)
        following = text[match.end() :].lstrip()
        if name in _KEYWORDS or following.startswith("("):
            continue
        if re.fullmatch(r"\d+[smhdwy]|e\d*", name):
            continue
        names.add(name)
    return names
