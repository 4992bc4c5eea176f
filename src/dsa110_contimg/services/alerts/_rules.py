"""Load the alert rules from the Prometheus rule file.

`load_rules` reads ``monitoring/alerts.yml`` (shipped in the package as
``dsa110_contimg/data/alerts.yml``, or ``alerts.rules_path``), checks each
rule as promtool would for the fields the engine needs (``alert``, ``expr``,
``for``, ``labels.severity``, ``annotations.summary``), takes the thresholds
from the comparisons of its ``expr`` and pairs it with its in-process
evaluator (`_conditions.EVALUATORS`).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from dsa110_contimg.exceptions import ConfigError
from dsa110_contimg.services.alerts._conditions import EVALUATORS, Evaluator
from dsa110_contimg.services.alerts._figures import Figures

__all__ = [
    "SEVERITIES",
    "AlertRule",
    "load_rules",
    "parse_comparisons",
    "parse_duration_s",
    "promql_metric_names",
    "rules_file",
]

SEVERITIES = ("info", "warning", "critical")

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNIT_S = {
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
    "y": 31536000.0,
}
_COMPARISON = re.compile(
    r"(?<![=!~<>])(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?![\w.\[])"
)
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
_IDENT = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b\s*(\(|\{|\[)?")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_PROMQL_WORDS = frozenset(
    {
        "and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
        "group_right", "bool", "offset", "sum", "min", "max", "avg", "count",
        "time", "delta", "rate", "increase", "deriv", "histogram_quantile",
        "abs", "clamp_min", "clamp_max", "vector", "scalar", "avg_over_time",
        "max_over_time", "min_over_time", "topk", "bottomk", "quantile", "le",
        "irate", "absent", "label_replace", "round", "sort", "sort_desc",
    }
)  # fmt: skip


def parse_duration_s(text: str) -> float:
    """Return a Prometheus duration (``"15m"``, ``"1h30m"``, ``"0s"``) in seconds.

    Raises
    ------
    ValueError
        If ``text`` is not a duration.
    """
    text = str(text).strip()
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match[1]) * _UNIT_S[match[2]]
        pos = match.end()
    if not text or pos != len(text):
        msg = f"{text!r} is not a duration such as '30s', '15m' or '1h'"
        raise ValueError(msg)
    return total


def parse_comparisons(expr: str) -> list[tuple[str, float]]:
    """Return the ``(operator, number)`` comparisons of a PromQL expr, in order."""
    return [(m[1], float(m[2])) for m in _COMPARISON.finditer(expr)]


def promql_metric_names(expr: str) -> set[str]:
    """Return the metric names a PromQL expression selects.

    Identifiers followed by ``(`` are functions; PromQL keywords, label names
    inside ``{...}`` and string literals are left out.
    """
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "{}", text)
    text = _GROUPING.sub("", text)
    names = set()
    for match in _IDENT.finditer(text):
        word, follower = match[1], match[2]
        if follower == "(" or word in _PROMQL_WORDS:
            continue
        if re.fullmatch(r"\d+[a-z]*", word):
            continue
        names.add(word)
    return names


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One rule of the file, ready to evaluate in process.

    Attributes
    ----------
    name : str
        The ``alert`` name.
    expr : str
        The PromQL expression (what Prometheus evaluates).
    for_s : float
        How long the condition must hold before the alert fires (s).
    severity : str
        ``labels.severity``: info, warning or critical.
    labels : dict
        The rule's labels (severity included).
    annotations : dict
        ``summary``, ``description``... (templates with ``{{ $value }}`` and
        ``{{ $labels.NAME }}``).
    comparisons : tuple
        ``(operator, threshold)`` of each comparison of ``expr``.
    evaluator : Evaluator
        Computes the comparisons' operands from the figures.
    """

    name: str
    expr: str
    for_s: float
    severity: str
    labels: dict[str, str]
    annotations: dict[str, str]
    comparisons: tuple[tuple[str, float], ...]
    evaluator: Evaluator

    def instances(self, figures: Figures) -> list[tuple[dict[str, str], float]]:
        """Return the label sets (with their values) whose condition holds now."""
        out = []
        for labels, operands in self.evaluator.operands(figures):
            pairs = zip(operands, self.comparisons, strict=True)
            if all(
                value is not None and _OPS[op](float(value), threshold)
                for value, (op, threshold) in pairs
            ):
                out.append((labels, float(operands[0] or 0.0)))
        return out


def rules_file(path: Path | None = None) -> Path:
    """Return ``path``, or the rule file shipped with the package."""
    if path is not None:
        return Path(path)
    return Path(str(resources.files("dsa110_contimg").joinpath("data", "alerts.yml")))


def _fail(where: str, problem: str) -> ConfigError:
    return ConfigError(
        f"alert rules {where}: {problem}; fix the rule (check it with "
        "'promtool check rules'), or point alerts.rules_path at a valid file"
    )


def _rule(raw: object, where: str) -> AlertRule:
    if not isinstance(raw, dict) or "alert" not in raw:
        raise _fail(where, "is not an alerting rule (no 'alert' key)")
    name = str(raw["alert"])
    where = f"{where} ({name})"
    for key in ("expr", "for", "labels", "annotations"):
        if key not in raw:
            raise _fail(where, f"has no '{key}'")
    labels = {str(k): str(v) for k, v in dict(raw["labels"] or {}).items()}
    annotations = {str(k): str(v) for k, v in dict(raw["annotations"] or {}).items()}
    if labels.get("severity") not in SEVERITIES:
        raise _fail(where, f"labels.severity must be one of {list(SEVERITIES)}")
    if "summary" not in annotations:
        raise _fail(where, "has no annotations.summary")
    try:
        for_s = parse_duration_s(str(raw["for"]))
    except ValueError as err:
        raise _fail(where, f"for: {err}") from err
    evaluator = EVALUATORS.get(name)
    if evaluator is None:
        raise _fail(
            where,
            "has no in-process evaluator (add one to "
            "dsa110_contimg/services/alerts/_conditions.py)",
        )
    expr = " ".join(str(raw["expr"]).split())
    comparisons = tuple(parse_comparisons(expr))
    ops = tuple(op for op, _ in comparisons)
    if ops != evaluator.ops:
        raise _fail(
            where,
            f"expr comparisons {ops} differ from its evaluator's {evaluator.ops}",
        )
    used = promql_metric_names(expr)
    if used != set(evaluator.metrics):
        raise _fail(
            where,
            f"expr reads {sorted(used)} but its evaluator computes "
            f"{sorted(evaluator.metrics)}",
        )
    severity = labels["severity"]
    return AlertRule(
        name, expr, for_s, severity, labels, annotations, comparisons, evaluator
    )


def load_rules(path: Path | None = None) -> list[AlertRule]:
    """Read and check the alerting rules of a Prometheus rule file.

    Parameters
    ----------
    path : Path, optional
        Rule file; default the shipped ``alerts.yml``.

    Returns
    -------
    list of AlertRule
        In file order.

    Raises
    ------
    ConfigError
        The file is missing, not YAML, or a rule lacks a field, has an unknown
        severity or duration, or no evaluator.
    """
    source = rules_file(path)
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as err:
        raise _fail(str(source), f"cannot be read ({err})") from err
    except yaml.YAMLError as err:
        raise _fail(str(source), f"is not valid YAML ({err})") from err
    if not isinstance(data, dict) or not isinstance(data.get("groups"), list):
        raise _fail(str(source), "must hold 'groups: [{name, rules: [...]}]'")
    rules: list[AlertRule] = []
    for g, group in enumerate(data["groups"]):
        for r, raw in enumerate((group or {}).get("rules") or []):
            rules.append(_rule(raw, f"{source} groups[{g}].rules[{r}]"))
    names = [rule.name for rule in rules]
    if len(set(names)) != len(names):
        raise _fail(str(source), f"alert names repeat: {names}")
    return rules
